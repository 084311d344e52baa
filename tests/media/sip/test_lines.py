"""Phone calls and the one line count (``SESSIONS__MAX_CONCURRENT``, shared with the browser), and
the caller's hang-up: the session hears out the last words instead of being cut off."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
from pipecat.frames.frames import CancelFrame, EndFrame

from media.host import LinesBusy
from media.sip.server import SipServer
from media.sip.transaction import Timers
from media.sip.uac import Caller
from tests.media.sip.conftest import EchoHost, sip_settings, wait_for, with_lines
from tests.media.sip.probe import UdpProbe, offer, request

FAST = Timers(t1=0.05, t2=0.4)


async def start_server(tmp_path: Path, lines: int, retry_after_s: int = 30) -> SipServer:
    settings = with_lines(sip_settings(tmp_path), lines, retry_after_s)
    server = SipServer(settings, EchoHost(settings), timers=FAST)
    await server.start()
    return server


async def test_a_call_over_the_session_cap_gets_503_with_retry_after_before_any_media(
    tmp_path: Path,
) -> None:
    server = await start_server(tmp_path, lines=1, retry_after_s=45)
    browser = server.host.reserve_line()  # a browser patient being set up holds the only line
    probe = await UdpProbe.open()
    try:
        probe.send(request("INVITE", port=probe.port, body=offer(probe.port)), server.port)
        final = await probe.wait(lambda m: not m.is_request and int(m.status or 0) >= 200)
        assert final is not None and final.status == 503
        assert final.get("retry-after") == "45"
        assert 100 not in probe.statuses() and 180 not in probe.statuses()  # refused at once
        assert server.active_calls == 0 and not server.rtp_ports_in_use  # no media was set up
        assert server.host.runs == [] and len(server.host) == 0  # type: ignore[attr-defined]
        browser.release()
        caller = Caller(("127.0.0.1", server.port))
        await caller.open()
        try:
            await caller.invite()  # the line is free again: the next call is answered
            assert caller.statuses[-1] == 200
        finally:
            await caller.close()
    finally:
        probe.close()
        await server.stop()


async def test_a_call_holds_its_line_against_browser_patients_until_it_ends(tmp_path: Path) -> None:
    server = await start_server(tmp_path, lines=1)
    caller = Caller(("127.0.0.1", server.port))
    await caller.open()
    try:
        await caller.invite()
        assert server.host.in_use() == 1
        try:
            server.host.reserve_line()
            raise AssertionError("a browser offer was admitted over a live phone call")
        except LinesBusy:
            pass
        assert await caller.bye() == 200
        assert await wait_for(lambda: server.active_calls == 0 and server.host.in_use() == 0, 15)
        server.host.reserve_line().release()  # the line is free for the next patient
    finally:
        await caller.close()
        await server.stop()


async def test_a_caller_who_hangs_up_is_heard_out_not_cut_off(tmp_path: Path) -> None:
    # The caller's BYE ends the session the graceful way (an EndFrame behind the audio already
    # received, which the speech-to-text turns into a last transcription), not by cancelling it.
    server = await start_server(tmp_path, lines=2)
    caller = Caller(("127.0.0.1", server.port))
    await caller.open()
    try:
        await caller.invite()
        clip = caller.play((np.sin(np.arange(8000) / 3) * 6000).astype(np.int16))
        await asyncio.wait_for(clip.done.wait(), 5)
        assert await caller.bye() == 200
        assert await wait_for(lambda: server.active_calls == 0, 15)
        [echo] = server.host.echoes  # type: ignore[attr-defined]
        assert any(isinstance(f, EndFrame) for f in echo.frames)
        assert not any(isinstance(f, CancelFrame) for f in echo.frames)
        assert server.host.in_use() == 0
    finally:
        await caller.close()
        await server.stop()
