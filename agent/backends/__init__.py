"""Brain backends: ``MODEL_BACKEND`` picks one; each session gets its own instance."""

from __future__ import annotations

from agent.backends.base import BrainBackend
from configs.settings import ConfigError, Settings


def create_backend(settings: Settings) -> BrainBackend:
    """A fresh backend for one session, or ConfigError with a one-line reason."""
    name = settings.model_backend
    if name == "mock":
        from agent.backends.mock import InterviewBackend

        return InterviewBackend(settings)
    if name == "local":
        from agent.backends.medgemma import MedGemmaBackend

        return MedGemmaBackend(settings)
    if name == "cloud":
        from agent.backends.gemini import GeminiBackend

        return GeminiBackend(settings)
    if name == "openai":
        from agent.backends.openai_compat import OpenAICompatibleBackend

        return OpenAICompatibleBackend(settings)
    raise ConfigError(f"MODEL_BACKEND={name!r} is not one of mock, local, cloud, openai")
