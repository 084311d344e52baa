"""The project's own frames: the side channels of a session travel as frames."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from enum import StrEnum

from pipecat.frames.frames import ControlFrame, DataFrame, SystemFrame

from agent.backends.base import CameraImage, RetrievedCase
from agent.clarify import Ask
from agent.escalation import EscalationRecord
from agent.facts import ClinicalFacts
from agent.policy import Assessment, Urgency


@dataclass(frozen=True)
class Heard:
    """What Whisper wrote for a phrase or a turn, and how sure it was (its own scores).

    Carried as ``TranscriptionFrame.result``; ``avg_logprob`` of a turn is its least sure phrase's.
    """

    text: str
    avg_logprob: float = 0.0  # mean log-probability per token
    no_speech_prob: float = 0.0


@dataclass
class ClinicalStateFrame(DataFrame):
    """The conversation state and the one assessment of a patient phrase or turn.

    ``final`` is False for a phrase the patient is still speaking (the facts are a
    provisional copy); True once the turn is over and the facts are committed. ``assessment``
    is the turn's only verdict: triage makes it, similar-case evidence may raise it on the way
    (``pipeline/case_evidence.py``), and the brain and the escalation processor read this same
    object. ``revised`` marks the turn's state sent again because evidence that came after it
    raised the assessment: not a new turn, and no words of its own.

    Uninterruptible: a barge-in must not drop a red flag on its way to the escalation processor.
    """

    facts: ClinicalFacts = field(default_factory=ClinicalFacts)
    assessment: Assessment | None = None
    final: bool = True
    text: str = ""  # the patient's words this state came from (the turn, or the phrase so far)
    ask: Ask | None = None  # the agent must ask this before going on (agent/clarify.py)
    revised: bool = False
    interruptible: bool = field(default=False, init=False)


@dataclass
class PreemptiveTurnFrame(DataFrame):
    """The patient's turn as it stands in a silence that may be its end: answer it, unheard.

    Preemptive generation: the speech-to-text pushes it while the end of turn is still undecided
    (``pipeline/incremental_stt.py``). Triage assesses it on a provisional copy of the facts (so
    safety reads these words before anything is said) and attaches that state; the brain starts
    its reply and the voice synthesises the first sentence; the reply gate
    (``pipeline/reply_gate.py``) holds the audio. A ``PreemptiveTurnSettledFrame`` with the same
    ``draft_id`` then keeps the reply (the turn ended with these words) or drops it (the patient
    went on). Nothing about the draft is committed until it is kept.
    """

    text: str = ""
    heard: Heard | None = None
    draft_id: int = 0
    state: ClinicalStateFrame | None = None  # triage's provisional state of these words


@dataclass
class PreemptiveTurnSettledFrame(SystemFrame):
    """The draft turn ``draft_id`` is settled: ``kept`` (the turn ended with the same words; its
    reply plays and is committed) or not (the patient went on; the reply is dropped unheard).

    A system frame, so the held reply is released the moment the end of turn is confirmed, not
    after a long reply still streaming ahead of it. It may therefore overtake its draft: every
    processor matches the two by ``draft_id``.
    """

    draft_id: int = 0
    kept: bool = False


class KeptEarly:
    """A draft's settlement that overtook the draft itself (a system frame passes queued data).

    Each processor acting on drafts keeps one: ``note`` the settlement it could not match, and when
    the draft then comes by, ``take`` says whether it was already kept. Only the latest matters:
    the speech-to-text settles every draft before it sends the next.
    """

    def __init__(self) -> None:
        self._draft_id: int | None = None

    def note(self, settled: PreemptiveTurnSettledFrame) -> None:
        if settled.kept:
            self._draft_id = settled.draft_id

    def take(self, draft_id: int) -> bool:
        if self._draft_id != draft_id:
            return False
        self._draft_id = None
        return True


@dataclass
class UnclearSpeechFrame(DataFrame):
    """The patient spoke a turn, but nothing could be made of it (no words Whisper would stand by)."""


@dataclass
class SimilarCasesFrame(DataFrame):
    """Dermatologist-labelled SCIN cases similar to what the patient described or showed."""

    cases: list[RetrievedCase] = field(default_factory=list)
    query: str = ""


@dataclass
class ClinicianRequestFrame(SystemFrame):
    """The patient asked for a clinician without words (a button, pressing 0 on the phone)."""

    how: str = "button"


@dataclass
class ClinicianJoinedFrame(SystemFrame):
    """A clinician has joined the patient's room: the agent announces them, then stays quiet."""

    clinician: str = "the clinician"  # the display name (a frame's own ``name`` is taken)


class ClinicianExit(StrEnum):
    """How a clinician leaves the patient's room: the agent carries on, or the session ends."""

    HANDED_BACK = "handed_back"
    ENDED = "ended"


@dataclass
class ClinicianLeftFrame(SystemFrame):
    """The clinician left: ``handed_back`` (the agent carries on) or ``ended`` (goodbye)."""

    clinician: str = "the clinician"
    outcome: ClinicianExit = ClinicianExit.HANDED_BACK

    def __post_init__(self) -> None:
        super().__post_init__()
        self.outcome = ClinicianExit(self.outcome)  # typed, whoever sent it


@dataclass
class SummaryRequestFrame(SystemFrame):
    """The clinician asked the agent for a summary of what the patient said."""


@dataclass
class EscalationResolvedFrame(SystemFrame):
    """A clinician handed the patient back: the brain may assess again."""


@dataclass
class BrainFailedFrame(ControlFrame):
    """The brain (or the speech recognition feeding it) errored, timed out or produced nothing.

    The escalation processor turns it into an escalation: the agent never falls silent.
    Uninterruptible, for the same reason.
    """

    reason: str = "brain failure"
    interruptible: bool = field(default=False, init=False)


@dataclass
class ProcessorFailedFrame(SystemFrame):
    """A processor of the session raised or reported an error (``pipeline/fail_safe.py``).

    Queued straight into the escalation processor, which escalates as for a failed brain: the
    patient hears that the agent has a technical problem and a clinician is called. A system
    frame, so a processor stuck on a frame cannot hold it up. ``reason`` names the processor and
    the kind of error, never what the patient said.
    """

    reason: str = "processor failure"


class HandOff:
    """The clinician queue's receipt for one escalation record, carried by its ``EscalationFrame``.

    The escalation processor waits on it before the session counts as escalated: a record that
    reached nobody must leave the session free to escalate again. Whoever hands the record on
    (``EscalationObserver``) says ``taken`` or ``refused``, once.
    """

    def __init__(self) -> None:
        self._done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    @property
    def settled(self) -> asyncio.Future[bool]:
        """True once the record is taken, False once refused."""
        return self._done

    def taken(self) -> None:
        if not self._done.done():
            self._done.set_result(True)

    def refused(self) -> None:
        if not self._done.done():
            self._done.set_result(False)

    async def wait(self, timeout_s: float) -> bool:
        """Whether the record was taken; False when no answer came within ``timeout_s``.

        Shielded: a caller cancelled while waiting leaves the receipt to be settled.
        """
        try:
            return await asyncio.wait_for(asyncio.shield(self._done), timeout=timeout_s)
        except TimeoutError:
            return False


@dataclass
class EscalationFrame(SystemFrame):
    """A red flag was met: ``record`` is the redacted escalation record, typed, as it was made.

    Broadcast by the escalation processor: downstream to the observers (transcript, clinician
    queue, the patient's page), upstream to the brain, which gives no further assessment. A
    raised escalation (urgent, then an emergency) comes again with the same record id.
    ``handoff`` is the receipt the clinician queue's observer settles (None on a frame made
    elsewhere, as in the other processors' tests).
    """

    record: EscalationRecord
    handoff: HandOff | None = None

    @property
    def level(self) -> Urgency:
        return self.record.level

    @property
    def reasons(self) -> list[str]:
        return self.record.reasons


@dataclass
class AgentLineFrame(DataFrame):
    """A line the safety layer says in its own words: an escalation, company while a clinician is
    on the way, a clinician's arrival, a goodbye.

    The spoken guard says it as written (no rewording, no disclaimer added) and reports it as an
    agent utterance. Uninterruptible: the patient may talk over it, but it is never dropped on
    its way to the voice.
    """

    text: str = ""
    interruptible: bool = field(default=False, init=False)


@dataclass
class AgentUtteranceFrame(DataFrame):
    """What the agent said in one reply, after the spoken guard (for transcripts and history)."""

    text: str = ""
    disclaimer: bool = False
    started_at: float = 0.0  # time.monotonic() when the reply began


@dataclass
class CameraStillFrame(DataFrame):
    """A sampled camera frame worth keeping, JPEG-encoded, with its quality verdict."""

    image: CameraImage | None = None
