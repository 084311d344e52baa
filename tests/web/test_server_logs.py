"""The server's logs carry no personal data, whoever writes the line.

Our own code logs ids and events; but a library's line or a traceback carries text, and a
malformed SDP offer is one way a caller's words reach one: aiortc's parser puts the bad line in
its exception's message, and the server logs the refusal with its traceback. The real server
process, ``python -m web``, is driven with such an offer, and its stderr and every file it wrote
are searched.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from loguru import logger as loguru_logger
from starlette.testclient import TestClient

from agent.redacted_logs import setup_redacted_logging
from configs.settings import Settings
from tests.configs.test_logs import SAID, SECRETS, assert_clean, restore_logging  # noqa: F401 - a fixture
from web.app import create_app

# An SDP whose version line holds what a caller said instead of a number.
SDP = f"v={SAID}\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
OFFER = json.dumps({"sdp": SDP, "type": "offer"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, body: str) -> int:
    request = urllib.request.Request(url, body.encode(), {"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def wait_until_up(url: str, process: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the server did not come up")


@pytest.mark.slow
def test_the_server_process_never_writes_what_the_caller_said(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "APP_ENV": "development",
        "LOG_LEVEL": "INFO",
        "LOG_FORMAT": "json",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "ESCALATIONS_DIR": str(tmp_path / "escalations"),
        "VECTOR_STORE_DIR": str(tmp_path / "chroma"),
        "CLINICIAN__ACCOUNTS_FILE": str(tmp_path / "clinicians.json"),
        "CLINICIAN__AUDIT_LOG": str(tmp_path / "audit.log"),
    }
    stderr_path = tmp_path / "server.stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "web"], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
        try:
            wait_until_up(f"http://127.0.0.1:{port}/health", process)
            statuses = [post(f"http://127.0.0.1:{port}/api/offer", OFFER) for _ in range(2)]
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(30)
    assert statuses == [400, 400] and code in (0, -signal.SIGTERM)  # uvicorn re-raises the SIGTERM
    err = stderr_path.read_text(encoding="utf-8", errors="replace")
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    failures = [line for line in lines if line["message"].startswith("offer refused: its SDP could not")]
    assert len(failures) == 2, err[-3000:]  # the path was taken: both tracebacks were logged
    assert all("ValueError: invalid literal for int()" in line["exc_info"] for line in failures)
    assert_clean("\n".join(line["exc_info"] for line in failures))
    written = {
        path: path.read_bytes().decode("utf-8", errors="replace")
        for path in tmp_path.rglob("*")
        if path.is_file()
    }
    assert stderr_path in written
    leaks = {str(path): [s for s in SECRETS if s in text] for path, text in written.items()}
    assert not any(leaks.values()), leaks


@pytest.mark.usefixtures("restore_logging")
def test_the_app_with_the_servers_logging_set_up_redacts_library_lines_and_tracebacks(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(settings)
    setup_redacted_logging("INFO", "json")  # what python -m web does
    client = TestClient(app)
    assert client.post("/api/offer", content=OFFER).status_code == 400  # refused, logged with its traceback
    # And what pipecat writes through loguru when a browser sends a data-channel message that is
    # not JSON.
    loguru_logger.error(f"Error parsing JSON message {SAID}, Expecting value: line 1 column 1 (char 0)")
    err = capsys.readouterr().err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    [refusal] = [r for r in records if r["name"] == "web.app" and r["message"].startswith("offer refused")]
    assert "Traceback (most recent call last)" in refusal["exc_info"]
    assert records[-1]["name"] == "tests.web.test_server_logs"  # the forwarded loguru line
    assert_clean(err)
