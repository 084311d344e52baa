"""The project's own frames: the side channels of a session travel as frames."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipecat.frames.frames import ControlFrame, DataFrame, SystemFrame

from agent.backends.base import CameraImage


@dataclass
class BrainFailedFrame(ControlFrame):
    """The brain errored, timed out or produced nothing; the safety processor escalates."""

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
