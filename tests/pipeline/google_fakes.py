"""A local stand-in for Google's speech APIs: gRPC on 127.0.0.1, Google's own message classes.

It serves the two methods the cloud voice calls, on one port (``VOICE__GOOGLE_EMULATOR_HOST``):
Speech-to-Text v2 ``Speech/Recognize`` (what a phrase said: the test's recogniser, e.g. the
local Whisper, decides) and Text-to-Speech v1 ``TextToSpeech/StreamingSynthesize`` (a tone as
long as the text, in chunks, at the rate asked for). Each can be made to fail (UNAVAILABLE, as
an outage looks) or, for synthesis, to hang. It records what reached it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
import numpy as np
from google.cloud import texttospeech_v1
from google.cloud.speech_v2.types import cloud_speech

# What a phrase said: 16 kHz mono int16 samples in, the words out.
Recognizer = Callable[[np.ndarray], Awaitable[str]]
CONFIDENCE = 0.92
SECONDS_PER_CHARACTER = 0.04


class FakeGoogleSpeech:
    def __init__(self, recognize: Recognizer) -> None:
        self._recognize_words = recognize
        self.recognized: list[cloud_speech.RecognizeRequest] = []
        self.heard: list[str] = []
        self.synthesized: list[str] = []
        self.voices: list[str] = []
        self.stt_fails = False
        self.tts_fails_on: Callable[[str], bool] = lambda text: False
        self.tts_hangs = False
        self._server: grpc.aio.Server | None = None

    async def start(self) -> str:
        """Serve on a free loopback port; returns its host:port."""
        self._server = grpc.aio.server()
        speech = grpc.method_handlers_generic_handler(
            "google.cloud.speech.v2.Speech",
            {
                "Recognize": grpc.unary_unary_rpc_method_handler(
                    self._recognize,
                    request_deserializer=cloud_speech.RecognizeRequest.deserialize,
                    response_serializer=cloud_speech.RecognizeResponse.serialize,
                )
            },
        )
        tts = grpc.method_handlers_generic_handler(
            "google.cloud.texttospeech.v1.TextToSpeech",
            {
                "StreamingSynthesize": grpc.stream_stream_rpc_method_handler(
                    self._synthesize,
                    request_deserializer=texttospeech_v1.StreamingSynthesizeRequest.deserialize,
                    response_serializer=texttospeech_v1.StreamingSynthesizeResponse.serialize,
                )
            },
        )
        self._server.add_generic_rpc_handlers((speech, tts))
        port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return f"127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)

    async def _recognize(
        self, request: cloud_speech.RecognizeRequest, context: grpc.aio.ServicerContext
    ) -> cloud_speech.RecognizeResponse:
        self.recognized.append(request)
        if self.stt_fails:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the fake speech-to-text is down")
        samples = np.frombuffer(request.content, dtype=np.int16)
        words = await self._recognize_words(samples)
        self.heard.append(words)
        if not words:
            return cloud_speech.RecognizeResponse()
        alternative = cloud_speech.SpeechRecognitionAlternative(transcript=words, confidence=CONFIDENCE)
        return cloud_speech.RecognizeResponse(
            results=[cloud_speech.SpeechRecognitionResult(alternatives=[alternative])]
        )

    async def _synthesize(
        self,
        requests: AsyncIterator[texttospeech_v1.StreamingSynthesizeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[texttospeech_v1.StreamingSynthesizeResponse]:
        rate = 24000
        async for request in requests:
            if request.streaming_config:
                rate = request.streaming_config.streaming_audio_config.sample_rate_hertz or rate
                self.voices.append(request.streaming_config.voice.name)
                continue
            text = request.input.text
            self.synthesized.append(text)
            if self.tts_hangs:
                await asyncio.sleep(3600)
            if self.tts_fails_on(text):
                await context.abort(grpc.StatusCode.UNAVAILABLE, "the fake text-to-speech is down")
            for chunk in _tone(len(text) * SECONDS_PER_CHARACTER, rate):
                yield texttospeech_v1.StreamingSynthesizeResponse(audio_content=chunk)


def _tone(seconds: float, rate: int) -> list[bytes]:
    """A 220 Hz tone, in 100 ms pieces: audible, and unlike any voice."""
    t = np.arange(int(seconds * rate)) / rate
    pcm = (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16).tobytes()
    step = rate // 10 * 2
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]
