"""Cloud voice: which voice a session has, local (Whisper and Piper) or Google's, decided once.

``MODEL_BACKEND=cloud`` with ``VOICE__GOOGLE_CLOUD_PROJECT`` and
``VOICE__GOOGLE_APPLICATION_CREDENTIALS`` set moves speech off the box: Google Cloud
speech-to-text hears the patient and Google Cloud text-to-speech speaks
(``pipeline/google_voice.py``). Everything else stays local: Silero VAD, Smart Turn and the
incremental turn-taking, triage, the safety layer, and Piper for the safety lines' kept audio.

Only with the cloud model backend: a clinic that chose a local model chose that the
consultation stays on the box, and a Google project left in its environment must not send the
patient's voice away. That case is logged once and the local voice is used.

The key file is read by Google's auth library only; its path and content are never logged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from configs.settings import ConfigError, Settings

if TYPE_CHECKING:
    from pipecat.services.tts_service import TTSService

    from pipeline.google_voice import GoogleTranscriber
    from pipeline.safety_audio import SafetyAudio

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CloudVoice:
    """Google's speech services for the sessions of this process."""

    project: str
    credentials_file: Path
    location: str
    tts_voice: str
    emulator_host: str | None = None  # a local stand-in for both APIs (tests): no credentials sent

    def transcriber(self) -> GoogleTranscriber:
        """One session's speech-to-text, behind the same turn-taking as Whisper."""
        from pipeline.google_voice import GoogleTranscriber

        return GoogleTranscriber(self)

    def tts(self, kept: SafetyAudio) -> TTSService:
        """One session's voice, the safety lines' kept audio played when Google fails on one."""
        from pipeline.google_voice import SafeGoogleTTSService

        return SafeGoogleTTSService(self, kept=kept)


def cloud_voice(settings: Settings) -> CloudVoice | None:
    """Google's voice when the settings select it; None for the local voice (the default).

    ConfigError when selected with a key file that cannot be read: the server does not start
    (``warm_up`` asks first) rather than fail on the first patient.
    """
    voice = settings.voice
    if not (voice.google_cloud_project and voice.google_application_credentials):
        return None
    if settings.model_backend != "cloud":
        _warn_local_backend(settings.model_backend)
        return None
    credentials = settings.path(voice.google_application_credentials)
    if voice.google_emulator_host is None and not credentials.is_file():
        raise ConfigError("VOICE__GOOGLE_APPLICATION_CREDENTIALS is not a readable file")
    return CloudVoice(
        project=voice.google_cloud_project,
        credentials_file=credentials,
        location=voice.google_location,
        tts_voice=voice.google_tts_voice,
        emulator_host=voice.google_emulator_host,
    )


@lru_cache(maxsize=4)
def _warn_local_backend(backend: str) -> None:
    log.warning(
        "VOICE__GOOGLE_CLOUD_PROJECT is set but MODEL_BACKEND=%s: the voice stays local "
        "(the cloud voice is for MODEL_BACKEND=cloud only)",
        backend,
    )
