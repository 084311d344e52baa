"""MODEL_BACKEND=cloud: Google's Gemini API through ``google-genai``, streamed.

Everything sent leaves the machine, so every text that came from the patient or the conversation
(history, the patient's words, the facts summary) goes through ``agent.pii.redact`` first; camera
frames go as inline JPEG parts. Errors and timeouts are raised, never turned into an empty reply:
the brain processor makes them a fail-safe escalation. There are no retries (a retry costs the
patient seconds of silence; the escalation is the safer answer).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from functools import lru_cache

from google import genai
from google.genai import types

from agent.backends.base import BrainRequest
from agent.backends.prompt import Message, build_prompt
from agent.backends.remote import RemoteBackend
from configs.settings import ConfigError, Settings

log = logging.getLogger(__name__)

TEMPERATURE = 0.3


@lru_cache(maxsize=8)
def _client(api_key: str, base_url: str | None, total_timeout_s: float) -> genai.Client:
    """One client per key and endpoint, shared by the sessions."""
    options = types.HttpOptions(
        base_url=base_url,
        timeout=int(total_timeout_s * 1000),
        retry_options=types.HttpRetryOptions(attempts=1),
    )
    return genai.Client(api_key=api_key, vertexai=False, http_options=options)


def gemini_client(settings: Settings) -> genai.Client:
    """The process's client for the configured key and endpoint, or ConfigError without a key."""
    llm = settings.llm
    key = llm.google_api_key.get_secret_value().strip() if llm.google_api_key else ""
    if not key:
        raise ConfigError("MODEL_BACKEND=cloud needs LLM__GOOGLE_API_KEY (a Gemini API key)")
    # A backstop for a whole reply; each streamed chunk has its own deadline.
    return _client(key, llm.gemini_base_url, llm.timeout_s * 3)


def to_content(message: Message) -> types.Content:
    parts = [types.Part.from_bytes(data=jpeg, mime_type="image/jpeg") for jpeg in message.images]
    parts.append(types.Part.from_text(text=message.text))
    return types.Content(role="user" if message.role == "user" else "model", parts=parts)


class GeminiBackend(RemoteBackend):
    """One session's brain on the Gemini API."""

    name = "cloud"

    def __init__(self, settings: Settings) -> None:
        self._client = gemini_client(settings)
        super().__init__(settings)
        self._timeout_s = settings.llm.timeout_s

    def _config(self, system: str) -> types.GenerateContentConfig:
        model = self._settings.llm.gemini_model
        thinking = types.ThinkingConfig(thinking_budget=0) if model.startswith("gemini-2.5-flash") else None
        return types.GenerateContentConfig(
            system_instruction=system,
            max_output_tokens=self._settings.llm.max_new_tokens,
            temperature=TEMPERATURE,
            thinking_config=thinking,  # a voice reply cannot wait for thoughts
        )

    async def reply(self, request: BrainRequest) -> AsyncIterator[str]:
        number = self._settings.safety.emergency_number
        prompt = await asyncio.to_thread(build_prompt, request, emergency_number=number, redact=self._redact)
        async with asyncio.timeout(self._timeout_s):
            stream = await self._client.aio.models.generate_content_stream(
                model=self._settings.llm.gemini_model,
                contents=[to_content(message) for message in prompt.messages],
                config=self._config(prompt.system),
            )
        chunks, count, started = aiter(stream), 0, time.perf_counter()
        try:
            while True:
                try:
                    async with asyncio.timeout(self._timeout_s):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                text = chunk.text
                if text:
                    count += 1
                    yield text
        finally:
            log.debug("gemini reply: %d text chunks in %.2f s", count, time.perf_counter() - started)
            close = getattr(chunks, "aclose", None)
            if close is not None:
                await close()
