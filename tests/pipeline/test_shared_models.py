"""Many patients on one box: every session speaks with one Piper voice and listens with one Silero
and one Smart Turn model, and still hears only its own patient, the same as pipecat's own services.

Each test builds sessions the way the product does (``patient_session`` through the host) and
compares them with pipecat's stock services, which load their own models.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from pipecat.audio.turn.smart_turn.local_smart_turn_v3 import LocalSmartTurnAnalyzerV3
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADAnalyzer, VADParams, VADState
from pipecat.frames.frames import (
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
)
from pipecat.metrics.metrics import TurnMetricsData
from pipecat.pipeline.worker import PipelineParams
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameProcessor
from pipecat.services.piper.tts import PiperTTSService
from pipecat.tests.utils import run_test
from piper import AudioChunk, PiperVoice, SynthesisConfig

from agent.channel import Channel
from configs.settings import Settings
from pipeline.incremental_stt import IncrementalWhisperSTT
from pipeline.session import VAD_STOP_S
from pipeline.shared_models import shared_piper_voice, silero_session, smart_turn_session
from web.product import build_product

pytestmark = pytest.mark.slow
RATE = 16000
WINDOW = 512  # Silero's window at 16 kHz


def sessions(settings: Settings, count: int = 2) -> list[list[FrameProcessor]]:
    """``count`` patients' sessions, as the product builds them."""
    host = build_product(settings).host
    return [host.session_processors(host.context(f"patient-{i}", Channel.AUDIO)) for i in range(count)]


def tts_of(session: list[FrameProcessor]) -> PiperTTSService:
    return next(p for p in session if isinstance(p, PiperTTSService))


def vad_of(session: list[FrameProcessor]) -> VADAnalyzer:
    vad = next(p for p in session if isinstance(p, VADProcessor))
    return vad._vad_controller._vad_analyzer


def turn_of(session: list[FrameProcessor]) -> LocalSmartTurnAnalyzerV3:
    stt = next(p for p in session if isinstance(p, IncrementalWhisperSTT))
    assert isinstance(stt._end_of_turn, LocalSmartTurnAnalyzerV3)
    return stt._end_of_turn


def pcm16k(wav: Path) -> bytes:
    samples, rate = sf.read(wav, dtype="int16")
    return soxr.resample(samples, rate, RATE).astype(np.int16).tobytes()


def quiet(seconds: float) -> bytes:
    """A room with no one speaking: faint noise."""
    rng = np.random.default_rng(7)
    return (rng.normal(0, 30, int(seconds * RATE))).astype(np.int16).tobytes()


# --- the voice ---------------------------------------------------------------------------------


class SteadyVoice:
    """A Piper voice with its random noise off. Piper draws noise on every synthesis (one voice
    says a sentence twice in slightly different lengths), so audio is compared without it."""

    def __init__(self, voice: PiperVoice) -> None:
        self.config = voice.config
        self._voice = voice

    def synthesize(self, text: str) -> Iterator[AudioChunk]:
        return iter(self._voice.synthesize(text, SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)))


REPLY = "Thank you. How long have you had the rash on your forearm? Does it itch?"


async def heard(tts: PiperTTSService) -> bytes:
    """The reply's audio, at the voice's own rate: pipecat's resampler clears its history after
    0.2 s without audio, so resampled audio depends on how fast each sentence came."""
    down, _ = await run_test(
        tts,
        frames_to_send=[LLMFullResponseStartFrame(), LLMTextFrame(REPLY), LLMFullResponseEndFrame()],
        pipeline_params=PipelineParams(audio_out_sample_rate=tts._voice.config.sample_rate),
    )
    return b"".join(f.audio for f in down if isinstance(f, TTSAudioRawFrame))


async def test_two_sessions_speak_with_one_piper_voice_and_sound_as_pipecats_own(settings: Settings) -> None:
    anna, ben = sessions(settings)
    voice = tts_of(anna)._voice
    assert voice is tts_of(ben)._voice  # one voice in memory, not one per patient
    model = settings.path(settings.voice.piper_voices_dir) / f"{settings.voice.piper_voice}.onnx"
    assert voice is shared_piper_voice(model)  # the one the safety lines were said with at start-up

    stock = PiperTTSService(  # pipecat's service, loading its own voice
        download_dir=model.parent, settings=PiperTTSService.Settings(voice=settings.voice.piper_voice)
    )
    stock._voice = SteadyVoice(stock._voice)
    for session in (anna, ben):
        tts_of(session)._voice = SteadyVoice(voice)
    reference = await heard(stock)
    assert len(reference) / 2 / voice.config.sample_rate > 2.0  # the whole reply
    # Both patients hear the reply at once, synthesised on the shared pool: the same audio.
    together = await asyncio.wait_for(asyncio.gather(heard(tts_of(anna)), heard(tts_of(ben))), 60)
    assert together == [reference, reference]


class _MallInfo2(ctypes.Structure):
    _fields_ = [  # glibc's struct mallinfo2
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def mapped_by_malloc_mib() -> float:
    """Memory glibc's malloc holds in mmap'd blocks (large allocations such as an ONNX arena's)."""
    mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    mallinfo2.restype = _MallInfo2
    return mallinfo2().hblkhd / 2**20


def test_the_shared_voice_gives_back_what_a_long_reply_needed(settings: Settings) -> None:
    """A server runs for weeks: two long replies synthesised at once must not leave the voice
    holding their memory for the life of the process (onnxruntime's arena kept 512 MB)."""
    from pipeline.session import voice_model

    voice = shared_piper_voice(voice_model(settings))
    long_reply = " ".join([REPLY] * 4)

    def say() -> None:
        for _chunk in voice.synthesize(long_reply):
            pass

    say()  # first use: whatever is loaded once
    before = mapped_by_malloc_mib()
    for _round in range(2):
        speakers = [threading.Thread(target=say) for _ in range(2)]
        for speaker in speakers:
            speaker.start()
        for speaker in speakers:
            speaker.join(timeout=120)
    assert mapped_by_malloc_mib() - before < 64


# --- listening: voice activity -----------------------------------------------------------------


def confidences_in_step(analyzers: list[VADAnalyzer], streams: list[bytes]) -> list[list[float]]:
    """Each analyzer's confidence per window, the two streams' windows taken turn about."""
    size = WINDOW * 2
    out: list[list[float]] = [[] for _ in analyzers]
    for start in range(0, min(map(len, streams)) - size + 1, size):
        for i, (analyzer, stream) in enumerate(zip(analyzers, streams, strict=True)):
            out[i].append(float(np.ravel(analyzer.voice_confidence(stream[start : start + size]))[0]))
    return out


async def states(analyzer: VADAnalyzer, stream: bytes) -> list[VADState]:
    chunk = 320 * 2  # 20 ms, as the transport delivers it
    return [await analyzer.analyze_audio(stream[i : i + chunk]) for i in range(0, len(stream), chunk)]


def stock_vad() -> SileroVADAnalyzer:
    analyzer = SileroVADAnalyzer(params=VADParams(stop_secs=VAD_STOP_S))  # its own model
    analyzer.set_sample_rate(RATE)
    return analyzer


async def test_two_patients_at_once_share_one_vad_model_and_each_is_heard_alone(
    settings: Settings, speak: Callable[..., Path]
) -> None:
    anna, ben, carl, dora = (vad_of(session) for session in sessions(settings, 4))
    assert anna._model.session is ben._model.session is carl._model.session is silero_session()
    for analyzer in (anna, ben, carl, dora):  # as a session starts
        analyzer.set_sample_rate(RATE)
    speech = pcm16k(speak("It is on my left forearm, and it has grown this month.", lead_s=0.5, tail_s=1.0))
    room = quiet(len(speech) / 2 / RATE)

    alone = [confidences_in_step([stock_vad()], [stream])[0] for stream in (speech, room)]
    shared = confidences_in_step([anna, ben], [speech, room])  # windows of both, turn about
    np.testing.assert_allclose(shared[0], alone[0], atol=1e-6)
    np.testing.assert_allclose(shared[1], alone[1], atol=1e-6)

    # Two more patients, each analyzer on its own thread, at the same time.
    together = await asyncio.wait_for(asyncio.gather(states(carl, speech), states(dora, room)), 60)
    assert together == [await states(stock_vad(), speech), await states(stock_vad(), room)]
    assert VADState.SPEAKING in together[0]  # Carl is heard speaking
    assert set(together[1]) == {VADState.QUIET}  # Dora's silence stays silence


# --- listening: end of turn --------------------------------------------------------------------


async def end_of_turn(analyzer: LocalSmartTurnAnalyzerV3, stream: bytes) -> tuple[bool, float]:
    chunk = 320 * 2
    for i in range(0, len(stream), chunk):
        analyzer.append_audio(stream[i : i + chunk], is_speech=True)
    _, metrics = await analyzer.analyze_end_of_turn()
    assert isinstance(metrics, TurnMetricsData)
    return metrics.is_complete, metrics.probability


async def test_two_patients_share_one_smart_turn_model_and_each_turn_is_judged_as_pipecat_does(
    settings: Settings, speak: Callable[..., Path]
) -> None:
    anna, ben = (turn_of(session) for session in sessions(settings))
    assert anna._session is ben._session is smart_turn_session()  # one ONNX model
    finished = pcm16k(speak("I have had an itchy rash on my arm for two weeks."))
    unfinished = pcm16k(speak("The spot on my back is, um"))

    expected = []
    for clip in (finished, unfinished):
        stock = LocalSmartTurnAnalyzerV3()  # pipecat's, loading its own model
        stock.set_sample_rate(RATE)
        expected.append(await end_of_turn(stock, clip))
    # Both patients pause at once; each turn is judged on its own audio only.
    together = await asyncio.wait_for(
        asyncio.gather(end_of_turn(anna, finished), end_of_turn(ben, unfinished)), 60
    )
    assert [complete for complete, _ in together] == [complete for complete, _ in expected] == [True, False]
    np.testing.assert_allclose([p for _, p in together], [p for _, p in expected], atol=1e-6)
