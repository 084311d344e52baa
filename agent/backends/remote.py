"""What the backends that send text off this machine (Gemini, an OpenAI-compatible server) share."""

from __future__ import annotations

import time

from agent.backends.base import BrainBackend
from agent.backends.prompt import greeting, session_redactor
from configs.settings import Settings


class RemoteBackend(BrainBackend):
    """A backend whose prompts leave the machine: every text in them is redacted first."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._redact = session_redactor()

    def greeting(self) -> str:
        return greeting(self._settings.safety.emergency_number)

    def warm_up(self) -> float:
        """Build the PII redaction engines before the first patient speaks. Seconds."""
        from agent.pii import warm_up

        started = time.perf_counter()
        warm_up()
        return time.perf_counter() - started
