"""MODEL_BACKEND=openai: MedGemma (or another model) served elsewhere behind an OpenAI-compatible API.

vLLM, TGI and llama.cpp's server all speak ``POST /v1/chat/completions`` with ``stream: true``;
this backend streams from ``LLM__OPENAI_BASE_URL`` with the ``openai`` package. Camera frames go
as ``image_url`` data URLs. The prompt leaves this machine, so the conversation is redacted with
``agent.pii.redact`` first, as for the cloud backend. Errors and timeouts are raised (no retries):
the brain processor turns them into a fail-safe escalation.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from openai import AsyncOpenAI

from agent.backends.base import BrainRequest
from agent.backends.prompt import Message, Prompt, build_prompt
from agent.backends.remote import RemoteBackend
from configs.settings import ConfigError, Settings

log = logging.getLogger(__name__)

TEMPERATURE = 0.3


def chat_messages(prompt: Prompt) -> list[dict[str, Any]]:
    """The prompt as OpenAI chat messages, camera frames as JPEG data URLs."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": prompt.system}]
    messages += [_message(message) for message in prompt.messages]
    return messages


def _message(message: Message) -> dict[str, Any]:
    if not message.images:
        return {"role": message.role, "content": message.text}
    content: list[dict[str, Any]] = [
        {"type": "image_url", "image_url": {"url": _data_url(jpeg)}} for jpeg in message.images
    ]
    content.append({"type": "text", "text": message.text})
    return {"role": message.role, "content": content}


def _data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


class OpenAICompatibleBackend(RemoteBackend):
    """One session's brain on an OpenAI-compatible chat completions server."""

    name = "openai"

    def __init__(self, settings: Settings) -> None:
        llm = settings.llm
        if not llm.openai_base_url:
            raise ConfigError(
                "MODEL_BACKEND=openai needs LLM__OPENAI_BASE_URL (a vLLM server's, e.g. http://gpu-host:8000/v1)"
            )
        key = llm.openai_api_key.get_secret_value() if llm.openai_api_key else ""
        super().__init__(settings)
        # The read timeout is the longest silence between two chunks: a hung server fails the turn.
        timeout = httpx.Timeout(llm.timeout_s, connect=min(5.0, llm.timeout_s))
        self._client = AsyncOpenAI(
            base_url=llm.openai_base_url, api_key=key or "not-needed", timeout=timeout, max_retries=0
        )

    async def reply(self, request: BrainRequest) -> AsyncIterator[str]:
        number = self._settings.safety.emergency_number
        prompt = await asyncio.to_thread(build_prompt, request, emergency_number=number, redact=self._redact)
        stream = await self._client.chat.completions.create(
            model=self._settings.llm.openai_model,
            messages=chat_messages(prompt),  # type: ignore[arg-type]
            max_tokens=self._settings.llm.max_new_tokens,
            temperature=TEMPERATURE,
            stream=True,
        )
        count, started = 0, time.perf_counter()
        try:
            async for chunk in stream:
                text = chunk.choices[0].delta.content if chunk.choices else None
                if text:
                    count += 1
                    yield text
        finally:
            await stream.close()
            log.debug("openai-compatible reply: %d chunks in %.2f s", count, time.perf_counter() - started)
