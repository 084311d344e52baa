"""The project's own frames: the side channels of a session travel as frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipecat.frames.frames import ControlFrame, DataFrame, SystemFrame

from agent.backends.base import CameraImage, RetrievedCase
from agent.clarify import Ask
from agent.facts import ClinicalFacts
from agent.policy import Assessment


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
    """The conversation state and the policy's verdict after a patient phrase or turn.

    ``final`` is False for a phrase the patient is still speaking (the facts are a
    provisional copy); True once the turn is over and the facts are committed.
    """

    facts: ClinicalFacts = field(default_factory=ClinicalFacts)
    assessment: Assessment | None = None
    final: bool = True
    text: str = ""  # the patient's words this state came from (the turn, or the phrase so far)
    ask: Ask | None = None  # the agent must ask this before going on (agent/clarify.py)


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


@dataclass
class ClinicianLeftFrame(SystemFrame):
    """The clinician left: ``handed_back`` (the agent carries on) or ``ended`` (goodbye)."""

    clinician: str = "the clinician"
    outcome: str = "handed_back"


@dataclass
class SummaryRequestFrame(SystemFrame):
    """The clinician asked the agent for a summary of what the patient said."""


@dataclass
class EscalationResolvedFrame(SystemFrame):
    """A clinician handed the patient back: the brain may assess again."""


@dataclass
class BrainFailedFrame(ControlFrame):
    """The brain (or the speech recognition feeding it) errored, timed out or produced nothing.

    The safety processor turns it into an escalation: the agent never falls silent.
    """

    reason: str = "brain failure"


@dataclass
class EscalationFrame(SystemFrame):
    """A red flag was met. ``record`` is the redacted escalation record (a dict)."""

    level: str = "urgent"
    reasons: list[str] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class AgentUtteranceFrame(DataFrame):
    """What the agent said in one reply, after the safety processor (for transcripts)."""

    text: str = ""
    disclaimer: bool = False
    started_at: float = 0.0  # time.monotonic() when the reply began


@dataclass
class CameraStillFrame(DataFrame):
    """A sampled camera frame worth keeping, JPEG-encoded, with its quality verdict."""

    image: CameraImage | None = None
