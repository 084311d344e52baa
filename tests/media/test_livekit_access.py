"""LiveKit rooms: each participant's token grants exactly its role, expires, and the agent is
dispatched into the patient's room through the server's API (a local fake LiveKit server)."""

from __future__ import annotations

import jwt as pyjwt
import pytest
from aiohttp import web
from livekit import api
from pydantic import ValidationError

from configs.settings import LiveKitSettings
from media.livekit_access import AgentDispatcher, LiveKitNotConfigured, Role, mint

KEY, SECRET = "APIclinic", "s" * 40


def settings(url: str = "wss://livekit.example.org", **extra: object) -> LiveKitSettings:
    return LiveKitSettings(url=url, api_key=KEY, api_secret=SECRET, **extra)


def claims_of(token: str) -> api.access_token.Claims:
    return api.TokenVerifier(KEY, SECRET).verify(token)


def test_the_patient_may_join_only_their_room_with_microphone_and_camera() -> None:
    access = mint(settings(), Role.PATIENT, "session-1")
    claims = claims_of(access.token)
    grants = claims.video
    assert grants.room == "session-1" and grants.room_join
    assert grants.can_publish_sources == ["microphone", "camera"] and grants.can_subscribe
    assert not grants.can_publish_data and not grants.can_update_own_metadata
    assert not (grants.room_admin or grants.room_create or grants.room_list or grants.agent)
    assert claims.identity.startswith("patient-") and access.url == "wss://livekit.example.org"


def test_the_agent_joins_as_an_agent_publishing_its_voice_only() -> None:
    claims = claims_of(mint(settings(), Role.AGENT, "session-1").token)
    assert claims.video.agent and claims.kind == "agent"
    assert claims.video.can_publish_sources == ["microphone"] and claims.video.can_publish_data
    assert not claims.video.room_admin


def test_a_clinicians_token_names_them_and_two_tokens_never_share_an_identity() -> None:
    first = mint(settings(), Role.CLINICIAN, "session-1", name="Dr Okafor")
    second = mint(settings(), Role.CLINICIAN, "session-1", name="Dr Okafor")
    assert claims_of(first.token).name == "Dr Okafor"
    assert first.identity != second.identity


def test_tokens_expire_after_the_configured_time_and_a_forged_one_is_refused() -> None:
    token = mint(settings(token_ttl_s=120), Role.PATIENT, "session-1").token
    claims = pyjwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_aud": False})
    assert claims["exp"] - claims["nbf"] == 120
    with pytest.raises(pyjwt.ExpiredSignatureError):  # as a server checks it, 121 s later
        pyjwt.decode(token, SECRET, algorithms=["HS256"], leeway=-121, options={"verify_nbf": False})
    forged = pyjwt.encode(
        {**claims, "video": {**claims["video"], "room": "other"}}, "x" * 40, algorithm="HS256"
    )
    with pytest.raises(Exception):  # noqa: B017,PT011 - the library's own error type for a bad signature
        claims_of(forged)


def test_livekit_settings_are_refused_without_credentials_and_unset_means_peer_to_peer() -> None:
    with pytest.raises(ValidationError, match="LIVEKIT__API_KEY"):
        LiveKitSettings(url="wss://livekit.example.org")
    with pytest.raises(ValidationError, match="ws"):
        LiveKitSettings(url="ftp://livekit.example.org", api_key=KEY, api_secret=SECRET)
    with pytest.raises(LiveKitNotConfigured):
        mint(LiveKitSettings(), Role.PATIENT, "session-1")


async def test_the_agent_is_dispatched_into_the_patients_room(unused_tcp_port: int) -> None:
    seen: list[tuple[api.access_token.Claims, api.CreateAgentDispatchRequest]] = []

    async def create_dispatch(request: web.Request) -> web.Response:
        token = request.headers["Authorization"].removeprefix("Bearer ")
        asked = api.CreateAgentDispatchRequest.FromString(await request.read())
        seen.append((claims_of(token), asked))
        reply = api.AgentDispatch(id="AD_1", agent_name=asked.agent_name, room=asked.room)
        return web.Response(body=reply.SerializeToString(), content_type="application/protobuf")

    app = web.Application()
    app.router.add_post("/twirp/livekit.AgentDispatchService/CreateDispatch", create_dispatch)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", unused_tcp_port).start()
    try:
        dispatcher = AgentDispatcher(settings(f"http://127.0.0.1:{unused_tcp_port}", agent_name="intake"))
        assert await dispatcher.dispatch("session-1") == "AD_1"
    finally:
        await runner.cleanup()
    [(claims, asked)] = seen
    assert asked.room == "session-1" and asked.agent_name == "intake"
    assert claims.video.room_admin and claims.video.room == "session-1"  # admin of that room only
