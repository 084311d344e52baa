"""The SIP server with a cheap echo session behind it: signalling, limits, auth, hold, teardown.

Each call here runs the real bridge (UDP/TCP listeners, transactions, dialogs, RTP, jitter
buffer, resampling, the pipecat transport) with a session that echoes the caller instead of
the models, so what the caller hears back proves the whole media path.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path

import numpy as np
import pytest

from media.sip.g711 import PCMU
from media.sip.headers import NameAddr
from media.sip.rtp import RtpPacket, RtpSender
from media.sip.server import SipServer
from media.sip.transaction import Timers
from media.sip.uac import Caller, CallFailed
from pipeline.frames import ClinicianRequestFrame
from tests.media.sip.conftest import EchoHost, sip_settings, wait_for
from tests.media.sip.probe import UdpProbe, offer, request, tcp_exchange

FAST = Timers(t1=0.05, t2=0.4)


async def start_server(tmp_path: Path, host_delay_s: float = 0.0, **sip) -> SipServer:
    settings = sip_settings(tmp_path, **sip)
    server = SipServer(settings, EchoHost(settings, start_delay_s=host_delay_s), timers=FAST)
    await server.start()
    return server


def tone(hz: float, seconds: float, level: int = 8000) -> np.ndarray:
    return (np.sin(2 * np.pi * hz * np.arange(int(8000 * seconds)) / 8000) * level).astype(np.int16)


def dominant_hz(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64) * np.hanning(samples.size)))
    return float(np.argmax(spectrum) * 8000 / samples.size)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


async def test_a_call_rings_is_answered_echoes_and_hangs_up_cleanly(echo_server: SipServer) -> None:
    caller = Caller(("127.0.0.1", echo_server.port))
    await caller.open()
    try:
        await caller.invite()
        assert caller.statuses == [100, 180, 200]
        assert "m=audio" in caller.answer_sdp and "PCMU/8000" in caller.answer_sdp
        assert echo_server.active_calls == 1
        call = next(iter(echo_server.calls.values()))
        rtp_port = call.media.port
        clip = caller.play(tone(440, 1.0))
        await asyncio.wait_for(clip.done.wait(), 5)
        await asyncio.sleep(0.3)
        heard = caller.audio(since=clip.started)
        loud = heard[np.abs(heard) > 2000]
        assert loud.size > 4000, "the caller hears the echo of their tone"
        assert abs(dominant_hz(heard[np.flatnonzero(np.abs(heard) > 2000)[0] :][:4000]) - 440) < 10
        first = caller.first_sound_after(clip.started, threshold=1000)
        assert first is not None and first - clip.started < 0.2  # mouth to ear and back, through RTP
        assert await caller.bye() == 200
        assert await wait_for(lambda: echo_server.active_calls == 0, 5)
        assert rtp_port not in echo_server.rtp_ports_in_use and port_is_free(rtp_port)
    finally:
        await caller.close()


async def test_the_agent_hears_the_caller_through_loss_and_reordering(echo_server: SipServer) -> None:
    caller = Caller(("127.0.0.1", echo_server.port))
    await caller.open()
    try:
        await caller.invite()
        caller.sending = False  # from now on this test writes the RTP itself
        audio = tone(300, 1.6)
        sender = RtpSender(0)
        sender.sequence = 0xFFF0  # wraps around during the test
        packets = [sender.packet(PCMU.encode(audio[i : i + 160])) for i in range(0, audio.size, 160)]
        order = list(range(len(packets)))
        for i in range(0, len(order) - 1, 7):
            order[i], order[i + 1] = order[i + 1], order[i]  # a swapped pair every 140 ms
        lost = set(range(5, len(order), 23))  # about 4 % loss
        assert caller.remote_rtp is not None and caller._rtp is not None
        tick = time.monotonic()
        for index in order:  # one packet every 20 ms, on an absolute clock like a phone's
            if index not in lost:
                caller._rtp.sendto(packets[index], caller.remote_rtp)
            tick += 0.02
            await asyncio.sleep(max(0.0, tick - time.monotonic()))
        await asyncio.sleep(0.3)
        echo = echo_server.host.echoes[0]  # type: ignore[attr-defined]
        heard = np.concatenate(echo.heard)  # what the pipeline got: 16 kHz
        voiced = heard[np.abs(heard) > 1500]
        assert voiced.size > 16000 * 1.2, "most of the 1.6 s reached the pipeline"
        media = next(iter(echo_server.calls.values())).media
        stats = media.jitter.stats
        assert len(lost) <= stats.concealed <= len(lost) + 3 and stats.late <= 1  # swaps are undone
    finally:
        await caller.bye()
        await caller.close()


async def test_the_ok_is_retransmitted_until_acked_and_a_missing_ack_ends_the_call(
    echo_server: SipServer,
) -> None:
    probe = await UdpProbe.open()
    try:
        probe.send(request("INVITE", port=probe.port, body=offer(probe.port)), echo_server.port)
        assert await probe.wait(lambda m: m.status == 200, 3)
        started = time.monotonic()
        bye = await probe.wait(lambda m: m.method == "BYE", 64 * FAST.t1 + 3)
        assert bye is not None, "after 64*T1 without an ACK the server hangs up"
        assert 64 * FAST.t1 - 0.5 < time.monotonic() - started < 64 * FAST.t1 + 2
        times = [at for at, m in probe.messages if m.status == 200 and m.cseq[1] == "INVITE"]
        gaps = np.diff(times)
        assert len(times) >= 8
        assert np.allclose(gaps[:3], [0.05, 0.1, 0.2], atol=0.04)  # T1 doubling ...
        assert np.all(gaps[3:] < FAST.t2 + 0.1)  # ... up to T2
        assert await wait_for(lambda: echo_server.active_calls == 0, 3)
    finally:
        probe.close()


async def test_a_retransmitted_invite_is_not_a_second_call(echo_server: SipServer) -> None:
    probe = await UdpProbe.open()
    try:
        invite = request("INVITE", port=probe.port, branch="z9hG4bKsame", body=offer(probe.port))
        probe.send(invite, echo_server.port)
        await probe.wait(lambda m: m.status == 200, 3)
        probe.send(invite, echo_server.port)
        await asyncio.sleep(0.2)
        assert echo_server.active_calls == 1
        assert probe.statuses("INVITE").count(100) == 1  # one 100, and the 200 again
    finally:
        probe.close()


async def test_busy_here_when_every_line_is_taken(tmp_path: Path) -> None:
    server = await start_server(tmp_path, max_calls=1)
    first, second = Caller(("127.0.0.1", server.port)), Caller(("127.0.0.1", server.port))
    await first.open()
    await second.open()
    try:
        await first.invite()
        with pytest.raises(CallFailed) as refused:
            await second.invite()
        assert refused.value.status == 486
        assert server.active_calls == 1
    finally:
        await first.close()
        await second.close()
        await server.stop()


async def test_refusals_a_trunk_would_see(echo_server: SipServer) -> None:
    probe = await UdpProbe.open()
    port = echo_server.port
    cases = {
        "g729 only": (request("INVITE", port=probe.port, body=offer(probe.port, "18")), 488),
        "not sdp": (request("INVITE", port=probe.port, body=b"hello", content_type="text/plain"), 415),
        "register": (request("REGISTER", port=probe.port), 405),
        "made up": (request("FROBNICATE", port=probe.port), 501),
        "bye nobody": (request("BYE", port=probe.port, to_tag="nope"), 481),
        "info nobody": (request("INFO", port=probe.port, to_tag="nope"), 481),
        "cancel nothing": (request("CANCEL", port=probe.port), 481),
        "100rel": (request("INVITE", port=probe.port, body=offer(probe.port),
                           extra="Require: 100rel\r\n"), 420),
        "options at 0 hops": (request("OPTIONS", port=probe.port).replace(
            b"Max-Forwards: 70", b"Max-Forwards: 0"), 200),
        "too many hops": (request("INVITE", port=probe.port, body=offer(probe.port)).replace(
            b"Max-Forwards: 70", b"Max-Forwards: 0"), 483),
        "mailto": (request("OPTIONS", port=probe.port, uri="mailto:agent@example.org"), 416),
    }  # fmt: skip
    try:
        for data, _ in cases.values():
            probe.send(data, port)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        finals = {}
        for _, message in probe.messages:
            if not message.is_request and int(message.status or 0) >= 200:
                finals.setdefault(message.get("call-id"), int(message.status or 0))
        got = {}
        for name, (data, _) in cases.items():
            call_id = data.split(b"Call-ID: ")[1].split(b"\r\n")[0].decode()
            got[name] = finals.get(call_id)
        assert got == {name: status for name, (_, status) in cases.items()}
        allow = next(m for _, m in probe.messages if m.status == 405).get("allow") or ""
        assert "INVITE" in allow and "BYE" in allow and "OPTIONS" in allow
        assert echo_server.active_calls == 0
    finally:
        probe.close()


async def test_a_peer_outside_the_allow_list_is_forbidden(tmp_path: Path) -> None:
    server = await start_server(tmp_path, allowed_peers=["10.0.0.0/8"])
    caller = Caller(("127.0.0.1", server.port))
    await caller.open()
    try:
        with pytest.raises(CallFailed) as refused:
            await caller.invite()
        assert refused.value.status == 403 and server.active_calls == 0
    finally:
        await caller.close()
        await server.stop()


async def test_digest_authentication_challenges_then_admits(tmp_path: Path) -> None:
    server = await start_server(tmp_path, allowed_peers=[], digest_username="trunk", digest_password="s3cret")
    stranger = Caller(("127.0.0.1", server.port))
    trunk = Caller(("127.0.0.1", server.port), username="trunk", password="s3cret")
    wrong = Caller(("127.0.0.1", server.port), username="trunk", password="guess")
    for caller in (stranger, trunk, wrong):
        await caller.open()
    try:
        with pytest.raises(CallFailed) as refused:
            await stranger.invite()
        assert refused.value.status == 401
        with pytest.raises(CallFailed) as refused:
            await wrong.invite()
        assert refused.value.status == 401
        await trunk.invite()
        assert trunk.statuses == [401, 100, 180, 200]
        assert server.active_calls == 1
    finally:
        for caller in (stranger, trunk, wrong):
            await caller.close()
        await server.stop()


async def test_cancel_before_the_answer(tmp_path: Path) -> None:
    server = await start_server(tmp_path, host_delay_s=1.0)
    caller = Caller(("127.0.0.1", server.port))
    await caller.open()
    try:
        assert await caller.cancel_after_ringing() == 487
        assert caller.statuses == [100, 180, 200, 487]  # the 200 answers the CANCEL; the INVITE gets 487
        assert await wait_for(lambda: server.active_calls == 0 and not server.rtp_ports_in_use, 5)
        await asyncio.sleep(1.2)  # the session would have started by now: it must not
        assert len(server.host) == 0
    finally:
        await caller.close()
        await server.stop()


async def test_hold_pauses_the_agent_and_resume_brings_it_back(echo_server: SipServer) -> None:
    caller = Caller(("127.0.0.1", echo_server.port))
    await caller.open()
    try:
        await caller.invite()
        await asyncio.sleep(0.3)
        assert len(caller.received) > 5
        assert await caller.hold() == "recvonly"
        caller.play(tone(500, 1.0))  # music on hold: the agent must not hear it
        await asyncio.sleep(0.2)
        during = len(caller.received)
        await asyncio.sleep(1.0)
        assert len(caller.received) == during, "no RTP to a caller who holds"
        echo = echo_server.host.echoes[0]  # type: ignore[attr-defined]
        assert not np.any(np.abs(np.concatenate(echo.heard[-40:])) > 500), "hold music is not heard"
        assert await caller.resume() == "sendrecv"
        await asyncio.sleep(0.5)
        assert len(caller.received) > during + 10
        assert echo_server.active_calls == 1
    finally:
        await caller.close()


async def test_rtp_that_stops_ends_the_call(tmp_path: Path) -> None:
    server = await start_server(tmp_path, rtp_timeout_s=1.0)
    caller = Caller(("127.0.0.1", server.port))
    await caller.open()
    try:
        await caller.invite()
        call = next(iter(server.calls.values()))
        port = call.media.port
        await asyncio.sleep(1.5)
        assert server.active_calls == 1  # RTP flowing: the call stays
        caller.sending = False
        stopped = time.monotonic()
        await asyncio.wait_for(caller.ended.wait(), 5)
        assert caller.bye_received and 0.9 < time.monotonic() - stopped < 3.0
        assert await wait_for(lambda: server.active_calls == 0, 3)
        assert port_is_free(port) and len(server.host) == 0
    finally:
        await caller.close()
        await server.stop()


async def test_keypad_zero_asks_for_a_clinician_other_digits_are_ignored(
    echo_server: SipServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    caller = Caller(("127.0.0.1", echo_server.port))
    await caller.open()
    try:
        await caller.invite()
        caller.press("7")
        caller.press("0")
        echo = echo_server.host.echoes[0]  # type: ignore[attr-defined]
        assert await wait_for(lambda: any(isinstance(f, ClinicianRequestFrame) for f in echo.frames), 3)
        requests = [f for f in echo.frames if isinstance(f, ClinicianRequestFrame)]
        assert len(requests) == 1 and requests[0].how == "phone keypad 0"
        assert "keypad: digit ignored" in caplog.text and "7" not in caplog.text.split("keypad")[-1][:30]
    finally:
        await caller.bye()
        await caller.close()


async def test_sip_info_digits_and_logs_without_caller_identity(
    echo_server: SipServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="media.sip")
    probe = await UdpProbe.open()
    try:
        call_id = "private-call-id@127.0.0.1"
        invite = request("INVITE", port=probe.port, call_id=call_id, body=offer(probe.port))
        probe.send(invite, echo_server.port)
        ok = await probe.wait(lambda m: m.status == 200, 3)
        assert ok is not None
        tag = NameAddr.parse(ok.get("to") or "").tag or ""
        probe.send(request("ACK", port=probe.port, call_id=call_id, to_tag=tag), echo_server.port)
        info = request(
            "INFO", port=probe.port, call_id=call_id, cseq=2, to_tag=tag,
            body=b"Signal=0\r\nDuration=160\r\n", content_type="application/dtmf-relay",
        )  # fmt: skip
        probe.send(info, echo_server.port)
        assert await probe.wait(lambda m: m.status == 200 and m.cseq[1] == "INFO", 2)
        echo = echo_server.host.echoes[0]  # type: ignore[attr-defined]
        assert await wait_for(lambda: any(isinstance(f, ClinicianRequestFrame) for f in echo.frames), 3)
        probe.send(request("BYE", port=probe.port, call_id=call_id, cseq=3, to_tag=tag), echo_server.port)
        assert await probe.wait(lambda m: m.status == 200 and m.cseq[1] == "BYE", 2)
        assert await wait_for(lambda: echo_server.active_calls == 0, 3)
    finally:
        probe.close()
    for secret in ("Jane", "15551234567", "sip:", call_id, "127.0.0.1:"):
        assert secret not in caplog.text.replace("127.0.0.1:" + str(echo_server.port), "")
    assert "answered" in caplog.text and "ended (caller hung up)" in caplog.text


async def test_a_call_over_tcp(echo_server: SipServer) -> None:
    call_id = "tcp-call@127.0.0.1"
    invite = request("INVITE", port=5999, call_id=call_id, transport="TCP", body=offer(40000))
    replies = await tcp_exchange(echo_server.port, invite, within=2.0)
    assert [r.status for r in replies][:3] == [100, 180, 200]
    assert "transport=tcp" in (replies[2].get("contact") or "")
    await wait_for(lambda: echo_server.active_calls == 0, 64 * FAST.t1 + 3)  # the connection closed: no ACK
    assert echo_server.active_calls == 0


async def test_an_offerless_invite_gets_our_offer_and_the_ack_answers(echo_server: SipServer) -> None:
    probe = await UdpProbe.open()
    rtp = await UdpProbe.open()  # just a socket that collects the agent's RTP
    try:
        call_id = "late-offer@127.0.0.1"
        probe.send(request("INVITE", port=probe.port, call_id=call_id), echo_server.port)
        ok = await probe.wait(lambda m: m.status == 200, 3)
        assert ok is not None and b"m=audio" in ok.body and b"PCMA/8000" in ok.body
        tag = NameAddr.parse(ok.get("to") or "").tag or ""
        ack = request("ACK", port=probe.port, call_id=call_id, to_tag=tag, body=offer(rtp.port))
        probe.send(ack, echo_server.port)
        assert await wait_for(lambda: len(rtp.raw) > 10, 3), "RTP goes where the ACK's SDP says"
        assert RtpPacket.parse(rtp.raw[-1]).payload_type == 0
    finally:
        probe.close()
        rtp.close()


async def test_stopping_the_server_hangs_up_every_call(tmp_path: Path) -> None:
    server = await start_server(tmp_path)
    callers = [Caller(("127.0.0.1", server.port)) for _ in range(2)]
    try:
        for caller in callers:
            await caller.open()
            await caller.invite()
        assert server.active_calls == 2
        await server.stop()
        for caller in callers:
            await asyncio.wait_for(caller.ended.wait(), 3)
            assert caller.bye_received
        assert server.active_calls == 0 and not server.rtp_ports_in_use
    finally:
        for caller in callers:
            await caller.close()


class _Voice:
    """A clinician's voice for the seam: a 1 kHz tone, 20 ms at a time."""

    def __init__(self) -> None:
        self._phase = 0

    def read(self, samples: int) -> np.ndarray:
        t = np.arange(self._phase, self._phase + samples)
        self._phase += samples
        return (np.sin(2 * np.pi * 1000 * t / 8000) * 6000).astype(np.int16)


async def test_a_clinician_voice_can_join_the_call_and_hear_the_caller(echo_server: SipServer) -> None:
    caller = Caller(("127.0.0.1", echo_server.port))
    await caller.open()
    try:
        await caller.invite()
        session_id = next(iter(echo_server.calls.values())).tag
        transport = echo_server.transport_for(session_id)
        assert transport is not None and echo_server.transport_for("someone-else") is None
        tapped: list[np.ndarray] = []
        stop_tap = transport.tap_caller_audio(tapped.append)
        remove_voice = transport.add_audio_source(_Voice())
        joined = time.monotonic()
        clip = caller.play(tone(300, 1.0))
        await asyncio.wait_for(clip.done.wait(), 5)
        await asyncio.sleep(0.2)
        remove_voice()
        stop_tap()
        left = time.monotonic()
        await asyncio.sleep(0.6)
        during = caller.audio(since=joined + 0.1)[: int(8000 * 0.8)].astype(np.float64)
        spectrum = np.abs(np.fft.rfft(during * np.hanning(during.size))) ** 2
        hz = np.fft.rfftfreq(during.size, 1 / 8000)
        clinician = spectrum[(hz > 950) & (hz < 1050)].sum() / spectrum.sum()
        assert clinician > 0.25, "the caller hears the clinician (besides the echo of their own voice)"
        caller_side = np.concatenate(tapped)  # 16 kHz
        spectrum = np.abs(np.fft.rfft(caller_side.astype(np.float64)))
        heard_hz = np.argmax(spectrum) * 16000 / caller_side.size
        assert abs(heard_hz - 300) < 15, "the clinician hears the caller"
        after = caller.audio(since=left + 0.3)
        assert after.size and np.max(np.abs(after.astype(np.int32))) < 500, "gone once removed"
    finally:
        await caller.bye()
        await caller.close()


async def test_a_call_over_ipv6_loopback(tmp_path: Path) -> None:
    server = await start_server(tmp_path, host="::1", allowed_peers=["::1/128"])
    caller = Caller(("::1", server.port), host="::1")
    await caller.open()
    try:
        await caller.invite()
        assert "c=IN IP6 ::1" in caller.answer_sdp
        await asyncio.sleep(0.3)
        assert len(caller.received) > 5
        assert await caller.bye() == 200
        assert await wait_for(lambda: server.active_calls == 0, 3)
    finally:
        await caller.close()
        await server.stop()
