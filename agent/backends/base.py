"""The seam between the voice pipeline and whatever writes the agent's words.

A backend is created once per session (it may keep interview state) and streams its reply as
text pieces; the pipeline speaks them sentence by sentence as they arrive. Backends never decide
escalation: the triage policy assesses each turn before the brain, and the escalation processor
(``pipeline/escalation.py``) acts on that assessment.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from agent.channel import Channel

if TYPE_CHECKING:
    from agent.facts import ClinicalFacts
    from agent.policy import Assessment


@dataclass(frozen=True)
class CameraImage:
    """A still from the patient's camera (JPEG), with the sampler's quality verdict."""

    jpeg: bytes
    width: int
    height: int
    quality: str = "ok"  # ok | blurry | dark | overexposed | too_far


@dataclass(frozen=True)
class Utterance:
    role: Literal["patient", "agent"]
    text: str


@dataclass(frozen=True)
class RetrievedCase:
    """A similar dermatologist-labelled SCIN case."""

    case_id: str
    labels: dict[str, float]
    distance: float
    matched_on: Literal["image", "text"]


@dataclass
class BrainRequest:
    """What the brain knows when the patient has finished a turn.

    ``facts`` and ``assessment`` are the conversation state and the triage policy's verdict
    (``pipeline/triage.py``): backends put them in context and word the reply around them,
    they never overrule them. ``channel`` is "video" (browser, camera on) or "audio" (phone,
    or no camera): an audio-only patient cannot show the skin.
    """

    patient_text: str
    history: list[Utterance] = field(default_factory=list)
    images: list[CameraImage] = field(default_factory=list)
    similar_cases: list[RetrievedCase] = field(default_factory=list)
    facts: ClinicalFacts | None = None
    assessment: Assessment | None = None
    channel: Channel = Channel.VIDEO


class BrainBackend(ABC):
    """Writes the agent's words. One instance per session."""

    name: str = "base"

    @abstractmethod
    def greeting(self) -> str:
        """The opening line of the session (the spoken guard makes sure it carries a disclaimer)."""

    @abstractmethod
    def reply(self, request: BrainRequest) -> AsyncIterator[str]:
        """Stream the reply to the patient's turn as text pieces (any size, in order)."""

    def model_id(self) -> str:
        """The model that writes the replies, as the backend loaded or calls it (``/health/details``:
        what a rollback of ``LLM__MEDGEMMA_MODEL_ID`` changed). Without one of its own: the backend's name."""
        return self.name
