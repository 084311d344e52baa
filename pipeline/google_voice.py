"""Google Cloud speech-to-text and text-to-speech, as a session's ears and voice (cloud voice).

Hearing: the speech-to-text is ``GoogleTranscriber``, a drop-in for Whisper behind the same
incremental turn-taking (``pipeline/incremental_stt.py``): Silero VAD, Smart Turn, the pause
passes, preemptive drafts and barge-in stay local and unchanged; each pause's phrase goes to
Speech-to-Text v2 ``Recognize`` (one request per phrase, no retry, a deadline). Not pipecat's
``GoogleSTTService``: that one streams and emits Google's finals as they come, with no notion of
the patient's turn (the turn would end when Google decides, and the drafts, Smart Turn and
barge-in would be lost); on a stream error it reports and reconnects every second, and a stream
that the server simply closes ends its task without a word, after which nothing is heard.
Per-phrase requests fail per phrase instead: the turn then ends with a ``BrainFailedFrame``, and
the escalation processor says the failure line and calls a clinician, as for Whisper failing.
There is no fallback to local Whisper: the cloud voice is chosen when the box has no CPU for it.

Google's ``confidence`` (0..1) becomes the ``Heard`` score as its logarithm, so triage asks
"did you say ...?" on an unsure phrase as it does for Whisper's mean log-probability; a result
without a confidence counts as sure.

Speaking: pipecat's ``GoogleTTSService`` (streaming synthesis, Chirp 3 HD voices) with the
safety net of ``SafePiperTTSService``: when Google fails on a sentence (an error, no audio, or
no audio for ``SYNTHESIS_STALL_S``) that is one of the safety lines, the Piper audio kept at
start-up (``pipeline/safety_audio.py``) is played in its place; the error goes upstream either
way, so the fail-safe (``pipeline/fail_safe.py``) escalates the session.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import AsyncGenerator, Callable
from typing import Any, TypeVar

import grpc
import numpy as np
from google.cloud import speech_v2, texttospeech_v1
from google.cloud.speech_v2.services.speech.transports import SpeechGrpcAsyncIOTransport
from google.cloud.speech_v2.types import cloud_speech
from google.cloud.texttospeech_v1.services.text_to_speech.transports import (
    TextToSpeechGrpcAsyncIOTransport,
)
from google.oauth2 import service_account
from pipecat.frames.frames import ErrorFrame, Frame, TTSAudioRawFrame
from pipecat.services.google.tts import GoogleTTSService

from pipeline.cloud_voice import CloudVoice
from pipeline.frames import Heard
from pipeline.metrics import SAFETY_AUDIO_PLAYED_TOTAL
from pipeline.safety_audio import SafetyAudio

log = logging.getLogger(__name__)
SAMPLE_RATE = 16000
LANGUAGE = "en-US"
MODEL = "latest_long"  # the phrases are up to 25 s (IncrementalWhisperSTT's max_phrase_s)
RECOGNIZE_TIMEOUT_S = 8.0  # a phrase not back by then fails the turn (escalation), never waits on
SYNTHESIS_STALL_S = 4.0  # no audio for this long in a sentence: the voice has failed
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
Client = TypeVar("Client")
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, CloudVoice], Any]] = (
    weakref.WeakKeyDictionary()
)


def shared_client(service: str, voice: CloudVoice, make: Callable[[CloudVoice], Client]) -> Client:
    """The process's client for a service, made on first use in the running event loop.

    gRPC's asyncio channels belong to the loop they are made on, and sessions are assembled in
    a worker thread (``media/host.py``), so a client cannot be made with the session; one channel
    per service then carries every session's calls (one TLS connection, never one per session
    left open).
    """
    clients = _clients.setdefault(asyncio.get_running_loop(), {})
    key = (service, voice)
    if key not in clients:
        clients[key] = make(voice)
    return clients[key]


def _credentials(voice: CloudVoice) -> service_account.Credentials:
    """The service account's key, read by Google's library (never logged)."""
    return service_account.Credentials.from_service_account_file(
        str(voice.credentials_file), scopes=list(SCOPES)
    )


def _endpoint(voice: CloudVoice, service: str) -> dict[str, str] | None:
    """The regional endpoint for a location other than global (where the audio is processed)."""
    return (
        None if voice.location == "global" else {"api_endpoint": f"{voice.location}-{service}.googleapis.com"}
    )


def speech_client(voice: CloudVoice) -> speech_v2.SpeechAsyncClient:
    if voice.emulator_host:
        channel = grpc.aio.insecure_channel(voice.emulator_host)
        return speech_v2.SpeechAsyncClient(transport=SpeechGrpcAsyncIOTransport(channel=channel))
    return speech_v2.SpeechAsyncClient(
        credentials=_credentials(voice), client_options=_endpoint(voice, "speech")
    )


def tts_client(voice: CloudVoice) -> texttospeech_v1.TextToSpeechAsyncClient:
    if voice.emulator_host:
        channel = grpc.aio.insecure_channel(voice.emulator_host)
        return texttospeech_v1.TextToSpeechAsyncClient(
            transport=TextToSpeechGrpcAsyncIOTransport(channel=channel)
        )
    return texttospeech_v1.TextToSpeechAsyncClient(
        credentials=_credentials(voice), client_options=_endpoint(voice, "texttospeech")
    )


class GoogleTranscriber:
    """One session's speech-to-text on Google (``IncrementalWhisperSTT``'s ``SpeechToText``)."""

    sample_rate = SAMPLE_RATE

    def __init__(self, voice: CloudVoice) -> None:
        self._voice = voice
        self._recognizer = f"projects/{voice.project}/locations/{voice.location}/recognizers/_"
        self._config = cloud_speech.RecognitionConfig(
            explicit_decoding_config=cloud_speech.ExplicitDecodingConfig(
                encoding=cloud_speech.ExplicitDecodingConfig.AudioEncoding.LINEAR16,
                sample_rate_hertz=SAMPLE_RATE,
                audio_channel_count=1,
            ),
            language_codes=[LANGUAGE],
            model=MODEL,
            features=cloud_speech.RecognitionFeatures(enable_automatic_punctuation=True),
        )

    async def transcribe_scored_async(self, samples: np.ndarray, prompt: str = "") -> Heard:
        """The phrase's words; raises when Google fails (the turn then escalates).

        ``prompt`` (the turn's words so far, Whisper's context) is not sent: Google takes no
        free-text context, and less of the patient's words leave the box.
        """
        request = cloud_speech.RecognizeRequest(
            recognizer=self._recognizer,
            config=self._config,
            content=samples.astype(np.int16, copy=False).tobytes(),
        )
        client = shared_client("speech", self._voice, speech_client)
        response = await client.recognize(request=request, retry=None, timeout=RECOGNIZE_TIMEOUT_S)
        return heard(response)


def heard(response: cloud_speech.RecognizeResponse) -> Heard:
    """A phrase's results as one ``Heard``: the words in order, as sure as the least sure result."""
    best = [result.alternatives[0] for result in response.results if result.alternatives]
    text = " ".join(alt.transcript.strip() for alt in best if alt.transcript.strip())
    confidences = [alt.confidence for alt in best if alt.confidence > 0]
    return Heard(text, math.log(min(confidences)) if confidences else 0.0)


class SafeGoogleTTSService(GoogleTTSService):
    """Google's streaming voice, with the kept audio played for a safety sentence it fails to say."""

    def __init__(self, voice: CloudVoice, *, kept: SafetyAudio, **kwargs: Any) -> None:
        self._cloud = voice
        super().__init__(
            settings=GoogleTTSService.Settings(voice=voice.tts_voice, language=LANGUAGE), **kwargs
        )
        self._kept = kept

    def _create_client(self, credentials: str | None, credentials_path: str | None) -> Any:  # noqa: ANN401
        return None  # made on first use, in the event loop (``shared_client``)

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        self._client = shared_client("tts", self._cloud, tts_client)
        error: ErrorFrame | None = None
        spoke = False
        frames = super().run_tts(text, context_id)
        try:
            while True:
                try:
                    frame = await asyncio.wait_for(anext(frames), SYNTHESIS_STALL_S)
                except StopAsyncIteration:
                    break
                if isinstance(frame, ErrorFrame):
                    error = error or frame
                    continue
                spoke = spoke or (isinstance(frame, TTSAudioRawFrame) and bool(frame.audio))
                yield frame
        except TimeoutError as exc:
            error = ErrorFrame(error="Google text-to-speech stalled", exception=exc)
        except Exception as exc:  # noqa: BLE001 - the voice failing is what the kept audio is for
            error = ErrorFrame(error=f"Google text-to-speech failed: {type(exc).__name__}", exception=exc)
        finally:
            await frames.aclose()
        # Google's own failures are reported by the parent (push_error) and leave no audio.
        if not spoke:
            audio = self._kept.audio_for(text, self.sample_rate)
            if audio is not None:
                SAFETY_AUDIO_PLAYED_TOTAL.inc()
                log.warning("cloud voice failed on a safety line: playing the audio kept at start-up")
                step = max(self.chunk_size, 2) & ~1
                for i in range(0, len(audio), step):
                    yield TTSAudioRawFrame(audio[i : i + step], self.sample_rate, 1, context_id=context_id)
        if error is not None:
            yield error
