"""``python -m media.sip``: the bridge alone, configured from SIP__* variables, stops on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from media.sip.uac import Caller
from tests.media.sip.conftest import free_rtp_range
from tests.media.sip.probe import UdpProbe, request
from tests.media.sip.support import free_udp_port

pytestmark = pytest.mark.slow


async def test_the_standalone_bridge_answers_calls_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_udp_port()
    low, high = free_rtp_range()
    env = {
        **os.environ,
        "APP_ENV": "development",
        "LOG_LEVEL": "WARNING",
        "SIP__ENABLED": "true",
        "SIP__HOST": "127.0.0.1",
        "SIP__PORT": str(port),
        "SIP__TRANSPORTS": '["udp"]',
        "SIP__RTP_PORT_MIN": str(low),
        "SIP__RTP_PORT_MAX": str(high),
        "ESCALATIONS_DIR": str(tmp_path / "escalations"),
    }
    log = (tmp_path / "bridge.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "media.sip", env=env, stdout=asyncio.subprocess.PIPE, stderr=log
    )
    caller = Caller(("127.0.0.1", port))
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 90)
        assert b"SIP bridge ready" in line, line
        probe = await UdpProbe.open()
        probe.send(request("OPTIONS", port=probe.port), port)
        assert await probe.wait(lambda m: m.status == 200, 3)
        probe.close()
        await caller.open()
        await caller.invite()
        await asyncio.sleep(2.0)
        assert caller.first_sound_after(0.0, threshold=300) is not None, "the caller hears the agent"
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 20)
        await asyncio.wait_for(caller.ended.wait(), 5)  # the bridge hung up on its way out
        await caller.close()
        log.close()
    assert code == 0 and caller.bye_received
