"""The shared Whisper: scores what it writes, its warm-up really runs the model, and the phrases of
sessions speaking at once are transcribed together, each as it would be alone."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from configs.settings import Settings
from media.audio_files import read_mono_int16
from pipeline.frames import Heard
from pipeline.session import INPUT_RATE, whisper_dir
from pipeline.transcriber import Transcriber

pytestmark = pytest.mark.slow


def test_the_warm_up_runs_the_model_rather_than_returning_early(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    transcriber = Transcriber(whisper_dir(settings))
    windows: list[int] = []
    real_pass = transcriber._transcribe_short
    monkeypatch.setattr(
        transcriber,
        "_transcribe_short",
        lambda passes, window: windows.append(window) or real_pass(passes, window),
    )
    transcriber.warm_up()
    # The model ran (encoder and decoder) once per short window: the first patient pays no first-call cost.
    assert windows == [10, 20]


def test_a_clear_sentence_is_written_with_confidence(settings: Settings, speak) -> None:  # noqa: ANN001
    samples = read_mono_int16(speak("I have an itchy rash on my arm."), INPUT_RATE)
    heard = Transcriber(whisper_dir(settings)).transcribe_scored(samples)
    assert "rash" in heard.text.lower()
    assert heard.avg_logprob > -0.8  # above the "unsure" line of agent/clarify.py
    assert Transcriber(whisper_dir(settings)).transcribe_scored(np.zeros(16000, dtype=np.int16)).text == ""


RASH = "I have a red itchy rash on my left forearm."
WEEKS = "It started about two weeks ago."


def test_a_short_phrase_late_in_a_long_turn_is_still_written(settings: Settings, speak) -> None:  # noqa: ANN001
    # The turn so far is Whisper's prompt (incremental_stt gives up to 200 characters): a short
    # phrase after it must still have room to be written, not come back empty.
    earlier = (
        "I have a red itchy rash on my left forearm. It itches a lot, especially at night, and my skin "
        "usually burns in the sun. I tried some moisturiser but it did not help at all, it got worse."
    )[-200:]
    samples = read_mono_int16(speak(WEEKS), INPUT_RATE)
    heard = Transcriber(whisper_dir(settings)).transcribe_scored(samples[: int(1.2 * INPUT_RATE)], earlier)
    assert "started" in heard.text.lower()


def run_while_a_long_turn_holds_the_model(
    transcriber: Transcriber,
    monkeypatch: pytest.MonkeyPatch,
    long_turn: np.ndarray,
    passes: list[tuple[np.ndarray, str]],
) -> list[Future[Heard]]:
    """Submits ``passes`` from threads of their own while another session's long turn is being
    transcribed, and lets that turn finish only once all of them are queued: they run as one batch."""
    started, release = threading.Event(), threading.Event()
    real_full = transcriber._transcribe_full

    def held(audio: np.ndarray, prompt: str) -> Heard:
        started.set()
        assert release.wait(30)
        return real_full(audio, prompt)

    monkeypatch.setattr(transcriber, "_transcribe_full", held)
    with ThreadPoolExecutor(len(passes) + 1) as pool:
        long = pool.submit(transcriber.transcribe_scored, long_turn)
        assert started.wait(30)
        futures = [pool.submit(transcriber.transcribe_scored, samples, prompt) for samples, prompt in passes]
        deadline = time.monotonic() + 10
        while transcriber.passes.waiting < len(passes) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert transcriber.passes.waiting == len(passes)
        release.set()
        assert long.result(60).text
        for future in futures:
            future.exception(60)  # finished, with a result or an error
    return futures


@pytest.fixture
def phrases(speak: Callable[..., Path]) -> dict[str, np.ndarray]:
    said = {text: read_mono_int16(speak(text), INPUT_RATE) for text in (RASH, WEEKS)}
    said["long"] = np.tile(said[RASH], 8)[: 18 * INPUT_RATE]  # over the largest short window
    return said


def test_phrases_batched_together_are_written_as_they_are_alone(
    settings: Settings, phrases: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    transcriber = Transcriber(whisper_dir(settings))
    passes = [(phrases[text], prompt) for text in (RASH, WEEKS) for prompt in ("", "My arm itches.")]
    alone = [transcriber.transcribe_scored(samples, prompt) for samples, prompt in passes]
    assert transcriber.passes.stats.largest == 1

    batched = run_while_a_long_turn_holds_the_model(transcriber, monkeypatch, phrases["long"], passes)

    assert transcriber.passes.stats.largest == 4  # the four queued phrases ran as one batch
    for heard, single in zip((f.result() for f in batched), alone, strict=True):
        assert heard.text == single.text
        assert heard.avg_logprob == pytest.approx(single.avg_logprob, abs=1e-3)
        assert heard.no_speech_prob == pytest.approx(single.no_speech_prob, abs=1e-3)


def test_two_sessions_speaking_at_once_each_get_their_own_words(
    settings: Settings, phrases: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    transcriber = Transcriber(whisper_dir(settings))
    first, second = run_while_a_long_turn_holds_the_model(
        transcriber, monkeypatch, phrases["long"], [(phrases[RASH], ""), (phrases[WEEKS], "")]
    )
    assert transcriber.passes.stats.last == 2
    rash, weeks = first.result().text.lower(), second.result().text.lower()
    assert "rash" in rash and "weeks" not in rash
    assert "weeks" in weeks and "rash" not in weeks


def test_a_failed_batch_fails_every_session_in_it_and_the_next_pass_works(
    settings: Settings, phrases: dict[str, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    transcriber = Transcriber(whisper_dir(settings))
    real_short = transcriber._transcribe_short

    def broken(passes: list[object], window: int) -> list[Heard]:  # noqa: ARG001 - the real one's signature
        raise RuntimeError("the model failed")

    monkeypatch.setattr(transcriber, "_transcribe_short", broken)
    futures = run_while_a_long_turn_holds_the_model(
        transcriber,
        monkeypatch,
        phrases["long"],
        [(phrases[RASH], ""), (phrases[WEEKS], ""), (phrases[RASH], "x")],
    )
    # Each session's pass failed (its fail-safe tells the patient); none was left waiting.
    assert transcriber.passes.stats.last == 3
    assert all(isinstance(f.exception(), RuntimeError) for f in futures)

    monkeypatch.setattr(transcriber, "_transcribe_short", real_short)
    assert "rash" in transcriber.transcribe(phrases[RASH]).lower()
