"""Turn-taking figures for ``/metrics``, read off the frames of a session as they are pushed.

Three observers, one figure each, so that an operator sees live what the turn-taking benchmark
measures offline:

* ``DroppedReplyObserver``: replies dropped unheard because the patient went on (the end of turn
  came too soon: a patient who paused mid-sentence and was answered);
* ``BargeInObserver``: how long the agent's voice goes on once the patient talks over it;
* ``StageLatencyObserver``: voice-to-voice latency split into its stages.

Times are the pipeline clock's at each push (``FramePushed.timestamp``), not the moment the
observer runs: pipecat hands frames to observers through a queue, so reading the clock here would
add that queue's delay. Each observer sees a frame once (its first push) and one copy of a
broadcast pair. The exact definitions are the help texts in ``pipeline/metrics.py``.

Marker frames: the speech-to-text (``pipeline/incremental_stt.py``) pushes no frame at the moment
it decides the turn is over; it pushes the turn's final ``TranscriptionFrame`` and then
``UserStoppedSpeakingFrame`` together, once its last Whisper pass is done. So ``end_of_turn``
includes the wait for that pass, and ``final_transcription`` reads 0 with it.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import deque

from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    BotStoppedSpeakingFrame,
    Frame,
    LLMFullResponseStartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed

from pipeline.frames import EscalationFrame, EscalationResolvedFrame, PreemptiveTurnSettledFrame
from pipeline.metrics import (
    BARGE_IN_STOP_SECONDS,
    REPLIES_DROPPED_TOTAL,
    STAGE_LATENCY_SECONDS,
    TurnStage,
)

NS = 1_000_000_000


class _PairFilter:
    """A broadcast frame is pushed as a pair (downstream and upstream): let only the first through.

    Bounded: a pair's copies are pushed one right after the other, so only recent ids matter.
    """

    def __init__(self, keep: int = 64) -> None:
        self._recent: deque[int] = deque(maxlen=keep)

    def first(self, frame: Frame) -> bool:
        sibling = getattr(frame, "broadcast_sibling_id", None)
        if sibling is not None and sibling in self._recent:
            return False
        self._recent.append(frame.id)
        return True


class _FrameObserver(BaseObserver):
    """Sees each frame once, at its first push, and one copy of each broadcast pair."""

    watched: tuple[type[Frame], ...] = ()

    def __init__(self) -> None:
        super().__init__(observe_every_push=False)
        self._pairs = _PairFilter()

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, self.watched) and self._pairs.first(data.frame):
            self.on_frame(data.frame, data.timestamp)

    @abstractmethod
    def on_frame(self, frame: Frame, at_ns: int) -> None:
        """One frame of interest, pushed at ``at_ns`` (the pipeline clock, nanoseconds)."""


class DroppedReplyObserver(_FrameObserver):
    """Counts replies the patient never heard because they went on (``replies_dropped_total``).

    The speech-to-text interrupts when a turn starts while an answer may be on its way: a turn
    that ended at a mid-sentence pause got an answer, and the patient's next words drop it. A
    draft turn's reply (preemptive generation) that the patient's next words drop is counted as
    well: its ``PreemptiveTurnSettledFrame`` says ``kept=False``. While escalated the brain does
    not answer (what the agent says then are the safety layer's lines, not replies to the turn):
    nothing counts.
    """

    watched = (
        UserStoppedSpeakingFrame,
        LLMFullResponseStartFrame,
        BotStartedSpeakingFrame,
        UserStartedSpeakingFrame,
        EscalationFrame,
        EscalationResolvedFrame,
        PreemptiveTurnSettledFrame,
    )

    def __init__(self) -> None:
        super().__init__()
        self._turn_over = False  # a patient turn ended; the next one has not started
        self._reply_unheard = False  # the agent began answering it, and none of it is audible yet
        self._escalated = False
        self.dropped = 0

    def on_frame(self, frame: Frame, at_ns: int) -> None:
        if isinstance(frame, UserStoppedSpeakingFrame):
            self._turn_over = True
        elif isinstance(frame, LLMFullResponseStartFrame):
            self._reply_unheard = self._turn_over and not self._escalated
        elif isinstance(frame, BotStartedSpeakingFrame):
            self._reply_unheard = False
        elif isinstance(frame, UserStartedSpeakingFrame):
            if self._reply_unheard and not self._escalated:
                self._count_dropped()
            self._turn_over = self._reply_unheard = False
        elif isinstance(frame, PreemptiveTurnSettledFrame):
            if not frame.kept and not self._escalated:
                self._count_dropped()
        elif isinstance(frame, EscalationFrame):
            self._escalated, self._reply_unheard = True, False
        elif isinstance(frame, EscalationResolvedFrame):
            self._escalated = False

    def _count_dropped(self) -> None:
        self.dropped += 1
        REPLIES_DROPPED_TOTAL.inc()


class BargeInObserver(_FrameObserver):
    """Barge-in stop time: the patient's speech onset over the agent to its voice stopping."""

    watched = (BotStartedSpeakingFrame, BotStoppedSpeakingFrame, VADUserStartedSpeakingFrame)

    def __init__(self) -> None:
        super().__init__()
        self._bot_speaking = False
        self._onset_ns: int | None = None  # the patient's first onset while the agent speaks
        self.stops_s: list[float] = []

    def on_frame(self, frame: Frame, at_ns: int) -> None:
        if isinstance(frame, BotStartedSpeakingFrame):
            self._bot_speaking, self._onset_ns = True, None
        elif isinstance(frame, VADUserStartedSpeakingFrame):
            if self._bot_speaking and self._onset_ns is None:
                # The VAD speaks up after start_secs of speech: the patient began that long before.
                self._onset_ns = at_ns - int(frame.start_secs * NS)
        else:
            if self._onset_ns is not None:
                stop_s = max(0.0, (at_ns - self._onset_ns) / NS)
                self.stops_s.append(stop_s)
                BARGE_IN_STOP_SECONDS.observe(stop_s)
            self._bot_speaking, self._onset_ns = False, None


class StageLatencyObserver(_FrameObserver):
    """Voice-to-voice by stage: end of turn, final transcription, first audio.

    Only turns whose speech end the VAD marked count: a turn closed because the session ended
    mid-phrase has no end-of-turn decision to time.
    """

    watched = (
        VADUserStartedSpeakingFrame,
        VADUserStoppedSpeakingFrame,
        TranscriptionFrame,
        UserStoppedSpeakingFrame,
        UserStartedSpeakingFrame,
        TTSAudioRawFrame,
        BotStartedSpeakingFrame,
    )

    def __init__(self) -> None:
        super().__init__()
        self._speech_end_ns: int | None = None  # the patient's last speech end in this turn
        self._untimed = False  # this turn was closed mid-phrase (the session ending)
        self._final_ns: int | None = None  # the turn's final TranscriptionFrame
        self._turn_end_ns: int | None = None  # the turn's UserStoppedSpeakingFrame
        self._audio_due_ns: int | None = None  # a final transcription waiting for the agent's audio
        self.observed: list[tuple[TurnStage, float]] = []

    def _observe(self, stage: TurnStage, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.observed.append((stage, seconds))
        STAGE_LATENCY_SECONDS.labels(stage=stage.value).observe(seconds)

    def on_frame(self, frame: Frame, at_ns: int) -> None:
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._speech_end_ns = None  # the patient speaks (again): the speech end is still to come
        elif isinstance(frame, VADUserStoppedSpeakingFrame):
            self._speech_end_ns = at_ns - int(frame.stop_secs * NS)
        elif isinstance(frame, UserStartedSpeakingFrame):
            # A new turn: a reply still unheard for the last one is dropped, so not timed.
            self._final_ns = self._turn_end_ns = self._audio_due_ns = None
            self._untimed = False
        elif isinstance(frame, TranscriptionFrame):
            if frame.finalized and self._final_ns is None:
                self._on_final(at_ns)
        elif isinstance(frame, UserStoppedSpeakingFrame):
            self._on_turn_end(at_ns)
        elif self._audio_due_ns is not None:  # TTSAudioRawFrame or BotStartedSpeakingFrame
            self._observe(TurnStage.FIRST_AUDIO, (at_ns - self._audio_due_ns) / NS)
            self._audio_due_ns = None

    def _on_final(self, at_ns: int) -> None:
        self._final_ns = at_ns
        if self._turn_end_ns is not None:  # the turn ended first: the text came after it
            self._observe(TurnStage.FINAL_TRANSCRIPTION, (at_ns - self._turn_end_ns) / NS)
            self._audio_due_ns = at_ns
        elif self._speech_end_ns is None:
            self._untimed = True

    def _on_turn_end(self, at_ns: int) -> None:
        speech_end, final = self._speech_end_ns, self._final_ns
        self._speech_end_ns = None
        if speech_end is None or self._untimed:
            return
        self._turn_end_ns = at_ns
        closed = at_ns if final is None else min(final, at_ns)
        self._observe(TurnStage.END_OF_TURN, (closed - speech_end) / NS)
        if final is not None:  # the text was there when the turn ended
            self._observe(TurnStage.FINAL_TRANSCRIPTION, 0.0)
            self._audio_due_ns = final


def turn_observers() -> list[BaseObserver]:
    """The observers of every spoken session's turn-taking figures (``media/host.py``)."""
    return [DroppedReplyObserver(), BargeInObserver(), StageLatencyObserver()]
