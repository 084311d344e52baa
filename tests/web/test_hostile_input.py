"""Hostile input against every HTTP route of the server, and malformed SDP offers.

The routes are read from the app itself (``create_app(settings).routes``, mounts included), so a
route added later is attacked too. Each request may carry malformed or deeply nested JSON, a body
over ``MAX_REQUEST_BYTES``, values of the wrong type, a wrong method, garbage or foreign tokens
(``X-Room-Token``, ``X-CSRF-Token``, ``Authorization``, cookies), odd headers and odd path
parameters (unicode, very long, traversal). What a patient, a clinician and an operator rely on:

- the server never answers 500: only 2xx, 3xx, 4xx, or 503 (every line busy);
- a refusal from a route that speaks JSON is JSON with an ``error`` a page can show;
- nothing is left open: no browser session, no line held, no peer connection.

Hypothesis runs derandomized without its example database, so CI sees the same examples every run.
"""

from __future__ import annotations

import asyncio
import gc
import json
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest
from aiortc import RTCPeerConnection
from hypothesis import HealthCheck, given, reject
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from agent.escalation import EscalationRecord
from configs.settings import ClinicianAccount, Settings, load_settings
from tests.web.test_auth import PASSWORD, password_hash
from tests.web.test_clinician_routes import escalation
from web.app import create_app
from web.auth import SESSION_COOKIE, Auth
from web.product import build_product

SECRET_KEY = "a test key that is long enough to sign patient tokens"
MAX_BODY = 64 * 1024  # the default MAX_REQUEST_BYTES, which these tests keep
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "BREW"]
# Pages and files are HTML, scripts and styles; every other route answers JSON (its refusals too).
NOT_JSON = ("/", "/clinician")
SAFE_STATUS = "2xx, 3xx, 4xx or 503"
FUZZ = hypothesis_settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)


# --- the server under attack --------------------------------------------------------------


@dataclass
class Server:
    app: Starlette
    client: TestClient
    settings: Settings
    auth: Auth  # same key as the app's: tokens it issues are ones the app would have issued
    records: list[EscalationRecord]

    def sign_in(self) -> tuple[str, str]:
        """A fresh clinician session (cookie, CSRF token): an earlier example may have signed out."""
        response = self.client.post("/clinician/login", json={"username": "ada", "password": PASSWORD})
        assert response.status_code == 200, response.text
        cookie = response.cookies[SESSION_COOKIE]
        self.client.cookies.clear()
        return cookie, response.json()["csrf"]


def hostile_settings(tmp: Path) -> Settings:
    """Development settings with one clinician account and rate limits high enough to reach the routes."""
    return load_settings(
        escalations_dir=tmp / "escalations",
        vector_store_dir=tmp / "chroma",
        secret_key=SECRET_KEY,
        clinician={
            "accounts": [
                ClinicianAccount(
                    username="ada", display_name="Dr Ada Lovelace", password_hash=password_hash()
                )
            ],
            "accounts_file": tmp / "clinicians.json",
            "audit_log": tmp / "audit.log",
        },
        sessions={
            "max_concurrent": 2,
            "offers_per_minute": 100_000,
            "clinician_requests_per_minute": 100_000,
            "sign_ins_per_minute": 100_000,
        },
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One started server for the whole module (its models load once), with escalations to act on."""
    settings = hostile_settings(tmp_path_factory.mktemp("hostile"))
    product = build_product(settings)
    app = create_app(settings, product)
    with TestClient(app, raise_server_exceptions=True) as client:
        assert client.portal is not None
        waiting, claimed = escalation("room-a"), escalation("room-b")
        for record in (waiting, claimed):
            client.portal.call(product.queue.add, record)
        client.portal.call(product.queue.claim, claimed.id, "ada")
        yield Server(app, client, settings, Auth(settings), [waiting, claimed])


def webrtc_sessions(app: Starlette) -> Any:
    return app.state.webrtc_sessions


def open_peer_connections() -> list[RTCPeerConnection]:
    """Every aiortc peer connection in this process that is not closed."""
    gc.collect()
    return [
        pc for pc in gc.get_objects() if isinstance(pc, RTCPeerConnection) and pc.connectionState != "closed"
    ]


def assert_nothing_left_open(server: Server) -> None:
    sessions = webrtc_sessions(server.app)
    assert len(sessions) == 0, "a browser session was left behind"
    assert sessions.in_use() == 0, "a line is still held"
    assert open_peer_connections() == [], "a peer connection was left open"


# --- routes, as the app declares them -----------------------------------------------------


@dataclass(frozen=True)
class RouteTemplate:
    path: str  # with {name} placeholders
    params: tuple[str, ...]
    methods: frozenset[str]  # what it answers; empty for a mount (any)

    @property
    def speaks_json(self) -> bool:
        return self.path not in NOT_JSON and not self.path.startswith("/static/")


def route_templates(app: Starlette) -> list[RouteTemplate]:
    """Every HTTP route and mount of ``app``; any other kind of route fails here to be added."""
    templates = []
    for route in app.routes:
        if isinstance(route, Route):
            params = tuple(route.param_convertors)
            templates.append(RouteTemplate(route.path, params, frozenset(route.methods or ())))
        elif isinstance(route, Mount):
            templates.append(RouteTemplate(route.path + "/{path}", ("path",), frozenset()))
        else:
            raise AssertionError(f"a route of a kind these tests do not attack yet: {route!r}")
    return templates


def test_every_route_is_attacked(server: Server) -> None:
    """The list comes from the app: the patient's, the clinician's, monitoring and the static files."""
    paths = {t.path for t in route_templates(server.app)}
    for expected in (
        "/",
        "/api/offer",
        "/health",
        "/metrics",
        "/clinician/login",
        "/clinician/api/escalations/{id}/end",
        "/api/room/{session_id}/clinician",
        "/static/{path}",
    ):
        assert expected in paths


# --- hostile pieces -----------------------------------------------------------------------

ODD_SEGMENTS = [
    "..",
    "../../etc/passwd",
    "..%2f..%2fpyproject.toml",
    "%2e%2e/%2e%2e/web/app.py",
    "....//....//etc/passwd",
    "%00",
    "\x00",
    "%",
    "%zz",
    "a" * 5000,
    "é" * 400,
    "\u202e\u0645\u0631\u062d\u0628\u0627",
    "😷" * 50,
    "CON",
    " ",
    ";",
    "app.js",
    "index.html",
    "~",
]
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)


def path_params(server: Server) -> st.SearchStrategy[str]:
    known = [r.id for r in server.records] + [r.session_id for r in server.records]
    return st.one_of(st.sampled_from(ODD_SEGMENTS + known), TEXT.filter(bool))


def fill(template: RouteTemplate, values: dict[str, str], raw: bool) -> str:
    """The path with its parameters filled in: percent-encoded, or raw (traversal stays traversal)."""
    path = template.path
    for name in template.params:
        value = values[name]
        path = path.replace("{" + name + "}", quote(value, safe="/%.~") if raw else quote(value, safe=""))
    return path


def garbage_token() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["", "null", "undefined", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "x" * 4000]),
        st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=120),
    )


def header_value() -> st.SearchStrategy[bytes]:
    """Bytes a client can put in a header: anything but CR, LF and NUL, up to 8 KiB."""
    return st.one_of(
        st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"").replace(b"\0", b"")),
        garbage_token().map(str.encode),
        st.integers(1, 16).map(lambda k: b"A" * (k * 512)),
    )


def json_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
        max_leaves=12,
    )


FIELDS = ["sdp", "type", "pc_id", "username", "password", "outcome", "token", "id"]


@dataclass(frozen=True)
class Body:
    content: bytes | None
    content_type: str | None = None
    chunked: bool = False


def bodies() -> st.SearchStrategy[Body]:
    """No body, JSON of the wrong shape, broken or deeply nested JSON, forms, binary, huge bodies."""
    fields = st.dictionaries(st.sampled_from(FIELDS), json_values(), max_size=5)
    as_json = st.one_of(fields, json_values()).map(lambda v: json.dumps(v).encode())
    broken = as_json.flatmap(lambda b: st.integers(0, max(0, len(b) - 1)).map(lambda n: b[:n]))
    nested = st.tuples(st.integers(50, 20_000), st.sampled_from(["[", '{"a":'])).map(
        lambda p: (p[1] * p[0]).encode()
    )
    huge = st.tuples(st.integers(MAX_BODY + 1, 3 * MAX_BODY), st.booleans()).map(
        lambda p: Body(b'{"sdp": "' + b"v" * p[0] + b'", "type": "offer"}', "application/json", p[1])
    )
    content_types = st.sampled_from(
        [
            None,
            "application/json",
            "application/x-www-form-urlencoded",
            "text/plain",
            "multipart/form-data",
            "¿",
        ]
    )
    payload = st.one_of(
        as_json,
        broken,
        nested,
        st.binary(max_size=300),
        st.just(b"username=ada&password=%ff%fe&username=&password"),
        st.just('{"username": "ådä", "password": "pässwörd"}'.encode("latin-1")),
    )
    return st.one_of(
        st.just(Body(None)),
        huge,
        st.tuples(payload, content_types, st.booleans()).map(lambda p: Body(p[0], p[1], p[2])),
    )


@dataclass(frozen=True)
class Attack:
    method: str
    path: str
    query: str
    headers: dict[str, bytes]
    body: Body

    def __str__(self) -> str:
        content = self.body.content or b""
        return (
            f"{self.method} {self.path[:200]}{'?' + self.query[:100] if self.query else ''} "
            f"headers={ {k: v[:60] for k, v in self.headers.items()} } "
            f"body={content[:120]!r}... ({len(content)} bytes, chunked={self.body.chunked})"
        )


@st.composite
def attacks(draw: st.DrawFn, server: Server, template: RouteTemplate) -> Attack:
    values = {name: draw(path_params(server)) for name in template.params}
    methods = sorted(template.methods) if template.methods else ["GET"]
    method = draw(st.one_of(st.sampled_from(methods), st.sampled_from(METHODS)))
    headers: dict[str, bytes] = {}
    session_ids = [r.session_id for r in server.records] + [values.get("session_id", "room-z")]
    room_token = st.one_of(
        garbage_token(), st.sampled_from(session_ids).map(server.auth.issue_patient_token)
    ).map(str.encode)
    cookie_mode = draw(st.sampled_from(["none", "garbage", "signed-in"]))
    csrf = b""
    if cookie_mode == "signed-in":
        cookie, real_csrf = server.sign_in()
        headers["cookie"] = f"{SESSION_COOKIE}={cookie}".encode()
        csrf = real_csrf.encode()
    elif cookie_mode == "garbage":
        headers["cookie"] = draw(
            st.one_of(header_value(), garbage_token().map(lambda t: f"{SESSION_COOKIE}={t}".encode()))
        )
    optional: dict[str, st.SearchStrategy[bytes]] = {
        "x-room-token": room_token,
        "x-csrf-token": st.one_of(st.just(csrf), header_value()),
        "authorization": st.one_of(
            header_value(), garbage_token().map(lambda t: f"Bearer {t}".encode()), st.just(b"Basic Og==")
        ),
        "origin": st.sampled_from([b"http://testserver", b"https://evil.example", b"null", b"\xff\xfe"]),
        "sec-fetch-site": st.sampled_from([b"same-origin", b"cross-site", b"none", b"\x00x"]),
        "host": st.sampled_from([b"testserver", b"", b"evil.example:99999", b"[::1"]),
        "content-length": st.sampled_from([b"-1", b"abc", b"0", b"99999999999999999999999", b"1e3"]),
        "x-forwarded-for": header_value(),
        "accept": header_value(),
        "range": st.sampled_from([b"bytes=0-0", b"bytes=-1", b"bytes=9-1", b"bytes=x", b"bytes=0-1,2-3"]),
        "if-none-match": header_value(),
        "if-modified-since": header_value(),
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=6)):
        headers[name] = draw(optional[name])
    body = draw(bodies())
    if body.content_type is not None and "content-type" not in headers:
        headers["content-type"] = body.content_type.encode("utf-8")
    query = draw(
        st.one_of(
            st.just(""),
            room_token.map(lambda t: "token=" + quote(t)),
            st.lists(TEXT, max_size=4).map(lambda xs: "&".join(quote(x, safe="=&") for x in xs)),
        )
    )
    return Attack(method, fill(template, values, draw(st.booleans())), query, headers, body)


# --- sending one, and what every answer must be -------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int
    content_type: str
    body: bytes
    headers: httpx.Headers


def send(client: TestClient, attack: Attack, limit: int = 256 * 1024) -> Answer:
    """Send the attack; read at most ``limit`` bytes (an event stream is read up to its first event).

    An exception the app raised (the client re-raises it) comes back as a 500 whose body is the
    traceback's last frames, so a failure says where the server broke.
    """
    content: Any = attack.body.content
    if content is not None and attack.body.chunked:
        data = content
        content = iter([data[i : i + 16 * 1024] for i in range(0, len(data), 16 * 1024)])
    url = attack.path + ("?" + attack.query if attack.query else "")
    try:
        request = client.build_request(attack.method, url, content=content, headers=attack.headers)
    except (httpx.InvalidURL, UnicodeError, ValueError, TypeError):
        reject()  # the client could not even form it: nothing reached the server
    client.cookies.clear()
    try:
        response = client.send(request, stream=True)
        try:
            kind = response.headers.get("content-type", "")
            read = b""
            # A HEAD has no body to read (an event stream's never ends); a stream's first event is enough.
            for chunk in () if attack.method == "HEAD" else response.iter_bytes():
                read += chunk
                if len(read) >= limit or kind.startswith("text/event-stream"):
                    break
        finally:
            response.close()
    except Exception as exc:  # noqa: BLE001 - the server's crash, reported as the 500 it would be
        where = "".join(traceback.format_exception(exc)[-6:])
        return Answer(500, "text/plain", where.encode(), httpx.Headers())
    return Answer(response.status_code, kind, read, response.headers)


def assert_safe_answer(attack: Attack, answer: Answer, speaks_json: bool) -> None:
    status = answer.status
    assert 200 <= status < 500 or status == 503, f"{status} (not {SAFE_STATUS}) for {attack}\n{answer.body!r}"
    assert answer.headers.get("x-content-type-options") == "nosniff", f"no security headers on {attack}"
    if status >= 400 and speaks_json and attack.method != "HEAD":
        assert answer.content_type.startswith("application/json"), f"{status} {answer.content_type}: {attack}"
        error = json.loads(answer.body)
        assert isinstance(error, dict) and isinstance(error.get("error"), str) and error["error"], attack


# --- every route, attacked ----------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_no_route_answers_500_to_hostile_requests(server: Server, data: st.DataObject) -> None:
    templates = route_templates(server.app)
    template = data.draw(st.sampled_from(templates), label="route")
    attack = data.draw(attacks(server, template), label="attack")
    assert_safe_answer(attack, send(server.client, attack), template.speaks_json)


def fixed_battery(server: Server, template: RouteTemplate) -> Iterator[Attack]:
    """The same hostile requests for every route, so each one is covered whatever Hypothesis draws."""
    values = {name: "../../" + "é" * 300 for name in template.params}
    path = fill(template, values, raw=False)
    cookie, csrf = server.sign_in()
    signed_in = {"cookie": f"{SESSION_COOKIE}={cookie}".encode(), "x-csrf-token": csrf.encode()}
    garbage = {
        "cookie": b"\xff=\xfe; " + SESSION_COOKIE.encode() + b"=..",
        "x-room-token": b"\xc3(",
        "x-csrf-token": b"A" * 8192,
        "authorization": b"Bearer \xff",
    }
    huge = Body(b"[" * (MAX_BODY + 10), "application/json")
    nested = Body(b"[" * 5000, "application/json")
    wrong_types = Body(json.dumps({f: [1, {"x": None}] for f in FIELDS}).encode(), "application/json")
    for method in METHODS:
        for headers in ({}, garbage, signed_in):
            for body in (Body(None), Body(b"{not json", "application/json"), wrong_types, nested, huge):
                yield Attack(method, path, "token=%ff", dict(headers), body)


def test_every_route_survives_a_fixed_hostile_battery(server: Server) -> None:
    for template in route_templates(server.app):
        for attack in fixed_battery(server, template):
            assert_safe_answer(attack, send(server.client, attack), template.speaks_json)


def test_a_body_over_the_limit_is_refused_on_every_route(server: Server) -> None:
    """Declared or streamed (chunked), a body over MAX_REQUEST_BYTES is refused before a route reads it."""
    content = b'{"sdp": "' + b"v" * (MAX_BODY + 1) + b'", "type": "offer"}'
    for template in route_templates(server.app):
        path = fill(template, {name: "room-a" for name in template.params}, raw=False)
        for method in sorted(template.methods - {"HEAD", "GET"}) or ["POST"]:
            for chunked in (False, True):
                attack = Attack(
                    method, path, "", {"content-type": b"application/json"}, Body(content, None, chunked)
                )
                answer = send(server.client, attack)
                assert answer.status == 413, attack
                assert "too large" in json.loads(answer.body)["error"]


def raw_get(server: Server, raw_path: bytes) -> tuple[int, bytes]:
    """GET a path exactly as written, past the HTTP client (which would resolve dot segments)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    sent: list[dict[str, Any]] = []
    requests = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client stays connected until the answer is sent
        raise AssertionError("unreachable")

    async def send_(message: dict[str, Any]) -> None:
        sent.append(message)

    assert server.client.portal is not None
    server.client.portal.call(server.app, scope, receive, send_)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_traversal_never_serves_a_file_outside_the_static_folder(server: Server) -> None:
    """Dot segments, encoded or not, never climb out of web/static (the source and the host are there)."""
    source = Path(__file__).resolve().parents[2]
    on_disk = [b"[project]", b"def create_app", b"root:x:0:0"]
    for path in (
        b"/static/../app.py",
        b"/static/../../pyproject.toml",
        b"/static/%2e%2e/app.py",
        b"/static/%2E%2E%2F%2E%2E%2Fpyproject.toml",
        b"/static/..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        b"/static/....//....//etc/passwd",
        b"/static//etc/passwd",
        b"/static/%00app.js",
        b"/static/app.js%00.py",
        b"/static/" + b"..%2f" * 2000 + b"etc%2fpasswd",
    ):
        status, body = raw_get(server, path)
        assert status in (400, 404), (path[:80], status)
        assert not any(s in body for s in on_disk), path[:80]
    assert raw_get(server, b"/static/app.js")[0] == 200  # what it does serve
    assert (source / "pyproject.toml").exists()  # the files it must not serve are really there


# --- malformed SDP --------------------------------------------------------------------------


def real_offer() -> str:
    """An offer as aiortc (a real WebRTC client) writes it: audio and video, ICE and DTLS lines."""

    async def make() -> str:
        pc = RTCPeerConnection()
        try:
            pc.addTransceiver("audio", direction="sendrecv")
            pc.addTransceiver("video", direction="sendrecv")
            await pc.setLocalDescription(await pc.createOffer())
            return pc.localDescription.sdp
        finally:
            await pc.close()

    return asyncio.run(make())


REAL_OFFER = real_offer()
LINES = REAL_OFFER.split("\r\n")
AUDIO_AT = REAL_OFFER.index("m=audio")
# Cut anywhere up to the first fingerprint line, a real offer cannot be answered (aiortc 1.16).
LAST_CUT = REAL_OFFER.index("a=fingerprint:") + len("a=fingerprint:s")


def cut_after(marker: str, start: int = AUDIO_AT) -> str:
    """The real offer cut just after the first ``marker`` from ``start``."""
    return REAL_OFFER[: REAL_OFFER.index(marker, start) + len(marker)]


def without(prefix: str) -> str:
    return "\r\n".join(line for line in LINES if not line.startswith(prefix))


def sdp_lines() -> st.SearchStrategy[str]:
    junk = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\r\n"), max_size=80)
    numbers = st.integers(-(2**70), 2**70).map(str)
    media = st.tuples(
        st.sampled_from(["audio", "video", "application", "", "x"]), numbers, junk, numbers
    ).map(lambda p: f"m={p[0]} {p[1]} {p[2]} {p[3]}")
    names = ["rtpmap", "fmtp", "candidate", "ice-ufrag", "ice-pwd", "fingerprint", "setup", "mid", "ssrc"]
    attribute = st.tuples(st.sampled_from([*names, "group", "rtcp", "extmap", "msid", "rtcp-fb"]), junk).map(
        lambda p: f"a={p[0]}:{p[1]}"
    )
    kinds = st.sampled_from([*"vosctmabiuekzr", "", "\x00"])
    other = st.tuples(kinds, junk).map(lambda p: f"{p[0]}={p[1]}")
    return st.one_of(st.sampled_from(LINES), media, attribute, other)


def huge_line() -> st.SearchStrategy[str]:
    """An attribute line of 1 000 to 70 000 characters (past the body limit at the top)."""
    return st.tuples(
        st.sampled_from(["a=ice-ufrag:", "a=rtpmap:96 ", "a=candidate:", "a=x-junk:", "a="]),
        st.integers(1000, 70_000),
        st.sampled_from(["A", "9", ":", " ", "é", "\x00"]),
    ).map(lambda p: p[0] + p[2] * p[1])


def malformed_sdp() -> st.SearchStrategy[str]:
    """SDP that no server can answer: SDP-ish text, real offers cut short or without their audio's
    credentials or m= lines, and huge attribute lines in offers already broken."""
    generated = st.lists(st.one_of(sdp_lines(), huge_line()), max_size=30).map(
        lambda ls: "\r\n".join(["v=0", *ls, "m=audio 9 UDP/TLS/RTP/SAVPF 0"]) + "\r\n"
    )
    truncated = st.integers(0, LAST_CUT).map(lambda n: REAL_OFFER[:n])
    no_media = st.just(without("m="))
    no_credentials = st.sampled_from(["a=ice-ufrag", "a=ice-pwd", "a=setup"]).map(without)
    broken_with_huge_line = st.tuples(truncated, huge_line()).map(lambda p: p[0] + "\r\n" + p[1])
    return st.one_of(generated, truncated, no_media, no_credentials, broken_with_huge_line)


def post_offer(server: Server, sdp: str, sdp_type: str = "offer", pc_id: Any = None) -> Answer:
    body: dict[str, Any] = {"sdp": sdp, "type": sdp_type}
    if pc_id is not None:
        body["pc_id"] = pc_id
    content = json.dumps(body).encode()
    return send(
        server.client, Attack("POST", "/api/offer", "", {"content-type": b"application/json"}, Body(content))
    )


SDP_ARGS = {
    "sdp": malformed_sdp(),
    "sdp_type": st.sampled_from(["offer", "offer", "answer"]),
    "pc_id": st.one_of(st.none(), st.just(""), garbage_token()),
}


@FUZZ
@given(**SDP_ARGS)
def test_a_malformed_offer_gets_no_session_and_leaves_nothing_open(
    server: Server, sdp: str, sdp_type: str, pc_id: str | None
) -> None:
    """Whatever the server answers a broken offer, no patient line is taken and no connection stays open."""
    answer = post_offer(server, sdp, sdp_type, pc_id)
    assert answer.status in (400, 413), answer  # never a session, never a 500
    assert_nothing_left_open(server)


@FUZZ
@given(**SDP_ARGS)
def test_a_malformed_offer_is_refused_with_400(
    server: Server, sdp: str, sdp_type: str, pc_id: str | None
) -> None:
    answer = post_offer(server, sdp, sdp_type, pc_id)
    if len(json.dumps({"sdp": sdp, "type": sdp_type, "pc_id": pc_id}).encode()) > MAX_BODY:
        assert answer.status in (400, 413), answer  # escaped in JSON it may pass the limit
    else:
        assert answer.status == 400, answer
        assert json.loads(answer.body)["error"]
    assert_nothing_left_open(server)


REFUSED = {  # aiortc raises ValueError: a 400 today
    "no m= line at all": without("m="),
    "no ICE password": without("a=ice-pwd"),
    "an rtcp attribute with no port": cut_after("a=rtcp:"),
    "a fingerprint with no value": cut_after("a=fingerprint:s"),
    "huge junk before the audio": REAL_OFFER[:AUDIO_AT] + "a=" + "x" * 60_000,
}
# aiortc raises something else than ValueError on these (it asserts, indexes, looks up):
# the offer handler answered 500 until every parser failure became a refusal.
CRASHES = {
    "an audio line cut to 'm=audio ' (AssertionError, aiortc/sdp.py:430)": cut_after("m=audio ", 0),
    "a connection line cut to 'c=' (AssertionError, aiortc/sdp.py:153)": cut_after("\r\nc="),
    "an attribute without its colon, 'a=rtpmap' (AttributeError, aiortc/sdp.py:504)": cut_after("a=rtpmap"),
    "an rtpmap without its codec, 'a=rtpmap:96 ' (IndexError, aiortc/sdp.py:516)": cut_after("a=rtpmap:96 "),
    "a candidate with nothing after 'a=candidate:' (AssertionError, aiortc/sdp.py:100)": cut_after(
        "a=candidate:"
    ),
    "no a=setup line (AttributeError: NoneType has no 'role', aiortc/rtcpeerconnection.py:996)": without(
        "a=setup"
    ),
    "an fmtp line for a payload type the audio does not declare (RuntimeError: coroutine raised "
    "StopIteration, aiortc/sdp.py:388 find_codec)": REAL_OFFER.replace(
        "a=rtpmap:96 opus/48000/2", "a=rtpmap:96 opus/48000/2\r\na=fmtp:111 minptime=10", 1
    ),
}


@pytest.mark.parametrize("sdp", list(REFUSED.values()), ids=list(REFUSED))
def test_these_broken_offers_are_refused_with_400(server: Server, sdp: str) -> None:
    answer = post_offer(server, sdp)
    assert answer.status == 400, answer
    assert (
        "could not be read" in json.loads(answer.body)["error"] or "sdp" in json.loads(answer.body)["error"]
    )
    assert_nothing_left_open(server)


@pytest.mark.parametrize("sdp", list(CRASHES.values()), ids=list(CRASHES))
def test_offers_that_crash_the_parser_are_refused_with_400_and_leave_nothing_open(
    server: Server, sdp: str
) -> None:
    answer = post_offer(server, sdp)
    assert answer.status == 400, answer
    assert_nothing_left_open(server)


def test_an_answer_where_an_offer_belongs_is_refused_with_400(server: Server) -> None:
    answer = post_offer(server, REAL_OFFER, "answer")
    assert answer.status == 400, answer


def test_a_huge_attribute_in_an_otherwise_real_offer_is_refused_with_400(server: Server) -> None:
    sdp = REAL_OFFER.replace("a=ice-ufrag:", "a=ice-ufrag:" + "A" * 2000)
    try:
        answer = post_offer(server, sdp)
    finally:
        assert server.client.portal is not None
        server.client.portal.call(webrtc_sessions(server.app).close)  # the session it started, if any
    assert answer.status == 400, answer


def test_after_the_attacks_no_session_line_or_peer_connection_is_left(server: Server) -> None:
    """Run last in this module: every hostile request above has been answered and cleaned up."""
    assert_nothing_left_open(server)
    details = server.client.get("/health/details").json()
    assert details["active_sessions"] == 0
    assert server.client.get("/health").json() == {"status": "ok"}
