"""A patient who says a red flag as the line drops is still escalated.

The whole session the product builds (VAD, incremental Whisper, triage, escalation, the clinician
queue) hears a synthesised patient; the patient hangs up the moment the sentence ends, with no
pause for the end of turn. ``LiveSession.hang_up`` must still get the words transcribed and
assessed, and the escalation record into the clinician queue, before the session ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.channel import Channel
from configs.settings import Settings
from media.audio_files import read_mono_int16
from media.file_transport import FileReplayTransport
from media.host import HANG_UP_GRACE_S, Transport
from pipeline.session import INPUT_RATE
from tools.replay import patient_turn
from web.product import build_product

pytestmark = pytest.mark.slow
# The red flag at the very end: words before a short pause could be assessed early (an interim).
RED_FLAG = "I have an itchy rash all over and now I can't breathe"


async def test_a_red_flag_said_as_the_line_drops_reaches_the_clinician_queue(
    speak: Callable[..., Path], settings: Settings
) -> None:
    wav = speak(RED_FLAG, lead_s=0.3, tail_s=0.0)  # no silence after the words: the line drops
    product = build_product(settings, phone=False)
    await product.warm_up()
    transport = FileReplayTransport(
        [patient_turn(read_mono_int16(wav, INPUT_RATE), "red flag")], input_rate=INPUT_RATE, output_rate=16000
    )
    live = await product.host.start(
        transport, kind=Transport.REPLAY, channel=Channel.AUDIO, output_rate=16000, idle_timeout_s=None
    )
    try:
        for _ in range(6000):  # until the last word has been sent (60 s at most)
            if transport.timeline.patient_turns:
                break
            await asyncio.sleep(0.01)
        assert transport.timeline.patient_turns, "the patient's sentence was never played"
        assert product.queue.for_session(live.session_id) is None  # not escalated before the hang-up
        began = time.monotonic()
        await live.hang_up()
        await asyncio.wait_for(live.wait(), 5)
        # Bounded: the grace, then the cancellation (the agent's reply may still be playing out).
        assert time.monotonic() - began <= HANG_UP_GRACE_S + 10
    finally:
        await live.cancel()
        await product.queue.close()

    record = product.queue.for_session(live.session_id)
    assert record is not None, "the red flag said as the line dropped never reached a clinician"
    assert record.level.value == "emergency"
    assert live.session_id not in product.host.live and product.host.in_use() == 0
