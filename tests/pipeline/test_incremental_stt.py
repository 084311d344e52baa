"""The incremental transcriber: phrases transcribed at pauses, turns ended on silence, barge-in."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from pipecat.audio.turn.base_turn_analyzer import EndOfTurnState
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    InputAudioRawFrame,
    InterimTranscriptionFrame,
    InterruptionFrame,
    TranscriptionFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.tests.utils import SleepFrame, run_test

from pipeline.frames import (
    BrainFailedFrame,
    Heard,
    PreemptiveTurnFrame,
    PreemptiveTurnSettledFrame,
    UnclearSpeechFrame,
)
from pipeline.incremental_stt import IncrementalWhisperSTT


class FakeTranscriber:
    """Answers each call with the next scripted phrase after ``delay_s``; records the calls."""

    sample_rate = 16000

    def __init__(self, phrases: list[str], delay_s: float = 0.1) -> None:
        self._phrases = list(phrases)
        self.delay_s = delay_s
        self.calls: list[tuple[float, int, str]] = []  # (started at, samples, prompt)

    async def transcribe_scored_async(self, samples: np.ndarray, prompt: str = "") -> Heard:
        self.calls.append((time.monotonic(), samples.size, prompt))
        await asyncio.sleep(self.delay_s)
        return Heard(self._phrases.pop(0), avg_logprob=-0.3)


def two_phrases(seconds: float, *, then_silence_s: float) -> list:
    """A phrase, a short pause (0.2 s, shorter than the end of turn), another phrase, silence."""
    phrase = [VADUserStartedSpeakingFrame(), *speech(seconds), VADUserStoppedSpeakingFrame()]
    second = [VADUserStartedSpeakingFrame(), *speech(seconds), VADUserStoppedSpeakingFrame()]
    return [*phrase, SleepFrame(sleep=0.2), *second, SleepFrame(sleep=then_silence_s)]


def speech(seconds: float) -> list[InputAudioRawFrame]:
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(int(seconds / 0.02)):
        chunk = (rng.standard_normal(320) * 3000).astype(np.int16)
        frames.append(InputAudioRawFrame(audio=chunk.tobytes(), sample_rate=16000, num_channels=1))
    return frames


def of_type(frames, kind):
    return [f for f in frames if isinstance(f, kind)]


async def test_a_turn_is_transcribed_during_the_end_of_turn_wait() -> None:
    # The pass takes 0.3 s and the turn ends 0.4 s after the VAD's stop. A pass started only
    # at the end of the turn would finish at 0.7 s: after the EndFrame at 0.55 s.
    fake = FakeTranscriber(["I have a rash on my arm."], delay_s=0.3)
    stt = IncrementalWhisperSTT(fake, turn_stop_s=0.6, vad_stop_s=0.2)
    down, _ = await run_test(
        stt,
        frames_to_send=[
            VADUserStartedSpeakingFrame(),
            *speech(1.0),
            VADUserStoppedSpeakingFrame(),
            SleepFrame(sleep=0.55),
        ],
    )
    finals = of_type(down, TranscriptionFrame)
    assert [f.text for f in finals] == ["I have a rash on my arm."]
    assert finals[0].finalized
    kinds = [
        type(f)
        for f in down
        if isinstance(f, (UserStartedSpeakingFrame, TranscriptionFrame, UserStoppedSpeakingFrame))
    ]
    assert kinds == [UserStartedSpeakingFrame, TranscriptionFrame, UserStoppedSpeakingFrame]
    assert len(fake.calls) == 1


async def test_phrases_before_a_pause_are_committed_and_shown_while_the_patient_goes_on() -> None:
    fake = FakeTranscriber(["It started on my back", "about three weeks ago."], delay_s=0.05)
    stt = IncrementalWhisperSTT(fake, turn_stop_s=0.6, vad_stop_s=0.2)
    down, _ = await run_test(
        stt,
        frames_to_send=two_phrases(0.8, then_silence_s=0.8),  # a short pause, shorter than the end of turn
    )
    assert [f.text for f in of_type(down, InterimTranscriptionFrame)] == ["It started on my back"]
    assert [f.text for f in of_type(down, TranscriptionFrame)] == [
        "It started on my back about three weeks ago."
    ]
    # The second pass covers only the new phrase and knows what came before.
    assert len(fake.calls) == 2
    assert fake.calls[1][2] == "It started on my back"
    assert fake.calls[1][1] < 1.2 * 16000
    assert len(of_type(down, UserStartedSpeakingFrame)) == 1


async def test_speaking_over_the_agent_interrupts_it() -> None:
    fake = FakeTranscriber(["Wait, sorry."])
    stt = IncrementalWhisperSTT(fake)
    down, up = await run_test(
        stt,
        frames_to_send=[BotStartedSpeakingFrame(), VADUserStartedSpeakingFrame(), *speech(0.5)],
    )
    assert of_type(down, InterruptionFrame) and of_type(up, InterruptionFrame)


async def test_going_on_before_the_answer_is_heard_drops_the_answer() -> None:
    # CI caught this race: the turn ended at a comma, the answer was being synthesised, and
    # the patient went on before any of it played. The agent then spoke over them.
    fake = FakeTranscriber(["Sorry to interrupt,", "I have a rash on my arm."], delay_s=0.05)
    stt = IncrementalWhisperSTT(fake, turn_stop_s=0.4, vad_stop_s=0.2)
    down, up = await run_test(
        stt,
        frames_to_send=[
            VADUserStartedSpeakingFrame(),
            *speech(0.6),
            VADUserStoppedSpeakingFrame(),
            SleepFrame(sleep=0.4),  # the turn ends; no BotStartedSpeakingFrame yet
            VADUserStartedSpeakingFrame(),
            *speech(0.6),
        ],
    )
    # The second turn is still being said when the test's session ends: it is closed at the end.
    finals = [f.text for f in of_type(down, TranscriptionFrame)]
    assert finals == ["Sorry to interrupt,", "I have a rash on my arm."]
    assert len(of_type(down, InterruptionFrame)) == 1 and len(of_type(up, InterruptionFrame)) == 1


async def test_the_first_words_do_not_cut_the_greeting_before_it_is_heard() -> None:
    fake = FakeTranscriber(["Hello?"])
    stt = IncrementalWhisperSTT(fake)
    down, _ = await run_test(stt, frames_to_send=[VADUserStartedSpeakingFrame(), *speech(0.5)])
    assert not of_type(down, InterruptionFrame)


async def test_a_click_is_not_a_turn() -> None:
    fake = FakeTranscriber([])
    stt = IncrementalWhisperSTT(fake, min_speech_s=0.25)
    down, _ = await run_test(
        stt,
        frames_to_send=[
            InputAudioRawFrame(audio=bytes(640), sample_rate=16000, num_channels=1),
            VADUserStartedSpeakingFrame(),
            VADUserStoppedSpeakingFrame(),
            SleepFrame(sleep=0.6),
        ],
    )
    assert fake.calls == []
    assert of_type(down, TranscriptionFrame) == []


async def test_resuming_while_the_turn_waits_for_a_pass_keeps_every_word() -> None:
    # The pass is slow (0.4 s); the turn timer gives up waiting after 0.1 s of silence and is
    # waiting on the pass when the patient speaks again. The pass must survive that.
    fake = FakeTranscriber(["My arm itches", "and it is spreading."], delay_s=0.4)
    stt = IncrementalWhisperSTT(fake, turn_stop_s=0.3, vad_stop_s=0.2)
    down, _ = await run_test(
        stt,
        frames_to_send=two_phrases(1.0, then_silence_s=1.2),
    )
    finals = of_type(down, TranscriptionFrame)
    assert [f.text for f in finals] == ["My arm itches and it is spreading."]
    assert len(of_type(down, UserStoppedSpeakingFrame)) == 1


async def test_a_failing_recogniser_ends_the_turn_and_fails_safe() -> None:
    class Broken(FakeTranscriber):
        async def transcribe_scored_async(self, samples: np.ndarray, prompt: str = "") -> Heard:
            raise RuntimeError("ctranslate2 crashed")

    stt = IncrementalWhisperSTT(Broken([]), turn_stop_s=0.3, vad_stop_s=0.2)
    down, _ = await run_test(
        stt,
        frames_to_send=[
            VADUserStartedSpeakingFrame(),
            *speech(0.5),
            VADUserStoppedSpeakingFrame(),
            SleepFrame(0.5),
        ],
    )
    assert [f.reason for f in of_type(down, BrainFailedFrame)] == ["speech recognition failed (RuntimeError)"]
    assert len(of_type(down, UserStoppedSpeakingFrame)) == 1  # the turn ended: the agent is not stuck


async def test_a_turn_carries_its_least_sure_phrase_score_and_speech_with_no_words_is_reported() -> None:
    class Unsure(FakeTranscriber):
        async def transcribe_scored_async(self, samples: np.ndarray, prompt: str = "") -> Heard:
            heard = await super().transcribe_scored_async(samples, prompt)
            return Heard(heard.text, avg_logprob=-1.1 if "arm" in heard.text else -0.2)

    stt = IncrementalWhisperSTT(
        Unsure(["I have a rash", "on my arm."], delay_s=0.05), turn_stop_s=0.6, vad_stop_s=0.2
    )
    down, _ = await run_test(
        stt,
        frames_to_send=two_phrases(0.8, then_silence_s=0.8),
    )
    final = of_type(down, TranscriptionFrame)[0]
    assert final.result.avg_logprob == -1.1

    stt = IncrementalWhisperSTT(FakeTranscriber([""], delay_s=0.05), turn_stop_s=0.4, vad_stop_s=0.2)
    down, _ = await run_test(
        stt,
        frames_to_send=[
            VADUserStartedSpeakingFrame(),
            *speech(1.2),
            VADUserStoppedSpeakingFrame(),
            SleepFrame(sleep=0.6),
        ],
    )
    assert of_type(down, UnclearSpeechFrame) and not of_type(down, TranscriptionFrame)


# --- the session ends mid-turn (the patient hangs up while talking) ---------------------------


async def test_words_still_being_said_when_the_session_ends_are_transcribed_before_the_end() -> None:
    # The patient is mid-phrase (no pause yet) when the line drops: the session ends with an
    # EndFrame. What was heard must still reach the triage as the turn's final transcription.
    fake = FakeTranscriber(["I can't breathe"], delay_s=0.2)
    stt = IncrementalWhisperSTT(fake, turn_stop_s=1.0, vad_stop_s=0.2)
    down, _ = await run_test(stt, frames_to_send=[VADUserStartedSpeakingFrame(), *speech(1.0)])
    finals = of_type(down, TranscriptionFrame)
    assert [f.text for f in finals] == ["I can't breathe"] and finals[0].finalized
    assert len(fake.calls) == 1 and fake.calls[0][1] >= 16000  # the whole second heard, in one pass
    assert len(of_type(down, UserStoppedSpeakingFrame)) == 1


async def test_a_session_ending_in_a_pause_closes_the_turn_with_the_running_pass_only() -> None:
    # The patient paused (the pass is running) and the line drops before the end of turn: the
    # turn ends with that pass's words, and the silence since is not transcribed again.
    fake = FakeTranscriber(["my lips are swelling"], delay_s=0.3)
    stt = IncrementalWhisperSTT(fake, turn_stop_s=1.5, vad_stop_s=0.2)
    down, _ = await run_test(
        stt,
        frames_to_send=[
            VADUserStartedSpeakingFrame(),
            *speech(0.8),
            VADUserStoppedSpeakingFrame(),
            *speech(0.3),
        ],
    )
    assert [f.text for f in of_type(down, TranscriptionFrame)] == ["my lips are swelling"]
    assert len(fake.calls) == 1


class HearsEveryPauseAsAnEnd:
    """An end-of-turn model that judges every pause a finished utterance (Smart Turn often does)."""

    def set_sample_rate(self, rate: int) -> None:
        pass

    def append_audio(self, buffer: bytes, _is_speech: bool) -> None:
        pass

    async def analyze_end_of_turn(self):
        return EndOfTurnState.COMPLETE, None

    def clear(self) -> None:
        pass


def said_with_a_pause(pause_s: float) -> list:
    first = [VADUserStartedSpeakingFrame(), *speech(0.6), VADUserStoppedSpeakingFrame()]
    second = [VADUserStartedSpeakingFrame(), *speech(0.6), VADUserStoppedSpeakingFrame()]
    return [*first, SleepFrame(sleep=pause_s), *second, SleepFrame(sleep=1.2)]


async def test_a_patient_pausing_on_an_open_word_is_not_cut_off() -> None:
    """ "It's on my ... left forearm": the pause after "my" is not the end of the turn, even
    when the end-of-turn model hears it as one."""
    fake = FakeTranscriber(["It's on my.", "left forearm."], delay_s=0.05)
    stt = IncrementalWhisperSTT(
        fake, end_of_turn=HearsEveryPauseAsAnEnd(), complete_stop_s=0.35, turn_stop_s=1.0, vad_stop_s=0.2
    )
    down, _ = await run_test(stt, frames_to_send=said_with_a_pause(0.6))
    assert [f.text for f in of_type(down, TranscriptionFrame)] == ["It's on my. left forearm."]


async def test_a_finished_sentence_still_ends_the_turn_after_the_short_silence() -> None:
    fake = FakeTranscriber(["It started two weeks ago.", "It itches."], delay_s=0.05)
    stt = IncrementalWhisperSTT(
        fake, end_of_turn=HearsEveryPauseAsAnEnd(), complete_stop_s=0.35, turn_stop_s=1.0, vad_stop_s=0.2
    )
    down, _ = await run_test(stt, frames_to_send=said_with_a_pause(0.6))
    assert [f.text for f in of_type(down, TranscriptionFrame)] == ["It started two weeks ago.", "It itches."]


async def test_the_turn_goes_ahead_as_a_draft_and_is_kept_when_the_silence_ends_it() -> None:
    # Preemptive generation: the reply can be made while the silence is waited out.
    fake = FakeTranscriber(["I have a rash on my arm."], delay_s=0.05)
    stt = IncrementalWhisperSTT(fake, turn_stop_s=0.8, vad_stop_s=0.2, preempt_lead_s=0.5)
    down, _ = await run_test(
        stt,
        frames_to_send=[
            VADUserStartedSpeakingFrame(),
            *speech(0.8),
            VADUserStoppedSpeakingFrame(),
            SleepFrame(0.9),
        ],
    )
    turn_frames = (
        PreemptiveTurnFrame,
        PreemptiveTurnSettledFrame,
        TranscriptionFrame,
        UserStoppedSpeakingFrame,
    )
    kinds = [type(f) for f in down if isinstance(f, turn_frames)]
    assert kinds == list(turn_frames)  # the draft well before the turn's end, kept at it
    [draft], [settled] = of_type(down, PreemptiveTurnFrame), of_type(down, PreemptiveTurnSettledFrame)
    assert draft.text == "I have a rash on my arm." and settled.kept and settled.draft_id == draft.draft_id
    assert of_type(down, InterruptionFrame) == []


async def test_a_draft_is_dropped_unheard_when_the_patient_goes_on() -> None:
    fake = FakeTranscriber(["It started on my back", "about three weeks ago."], delay_s=0.05)
    stt = IncrementalWhisperSTT(fake, turn_stop_s=0.8, vad_stop_s=0.2, preempt_lead_s=0.6)
    down, up = await run_test(stt, frames_to_send=two_phrases(0.8, then_silence_s=1.0))
    drafts, settled = of_type(down, PreemptiveTurnFrame), of_type(down, PreemptiveTurnSettledFrame)
    assert [d.text for d in drafts] == [
        "It started on my back",
        "It started on my back about three weeks ago.",
    ]
    assert [(s.draft_id, s.kept) for s in settled] == [
        (drafts[0].draft_id, False),
        (drafts[1].draft_id, True),
    ]
    assert of_type(up, InterruptionFrame)  # the first draft's reply is cut wherever it is
    assert [f.text for f in of_type(down, TranscriptionFrame)] == [
        "It started on my back about three weeks ago."
    ]
    assert len(of_type(down, UserStoppedSpeakingFrame)) == 1  # one turn, answered whole
