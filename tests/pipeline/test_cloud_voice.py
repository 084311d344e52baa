"""Cloud voice: Google's speech-to-text and text-to-speech, against a local fake of their APIs.

The fake (``tests/pipeline/google_fakes.py``) is a gRPC server on 127.0.0.1 speaking Google's
own messages; the session reaches it through ``VOICE__GOOGLE_EMULATOR_HOST``, exactly as it
would reach Google (the same client libraries, the same requests), minus TLS and the key.
Its speech-to-text recognises with the local Whisper, so what the patient says is what it hears.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import pytest
from pipecat.frames.frames import (
    ErrorFrame,
    Frame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TTSAudioRawFrame,
)
from pipecat.pipeline.worker import PipelineParams
from pipecat.tests.utils import SleepFrame, run_test
from prometheus_client import REGISTRY
from pydantic import SecretStr, ValidationError

from agent.backends.mock import InterviewBackend
from agent.escalation import escalation_message
from agent.policy import Urgency
from configs.settings import ConfigError, Settings, VoiceSettings
from media.audio_files import read_mono_int16
from pipeline import google_voice
from pipeline.cloud_voice import cloud_voice
from pipeline.escalation import FAILURE_PREFIX
from pipeline.google_voice import GoogleTranscriber, SafeGoogleTTSService
from pipeline.safety_audio import SafePiperTTSService, prepare_safety_audio, sentences
from pipeline.session import INPUT_RATE, listening_processors, make_tts, shared_transcriber_for, voice_model
from pipeline.transcriber import Transcriber
from tests.pipeline.google_fakes import FakeGoogleSpeech
from tools.replay import run_replay


@pytest.fixture
async def fake(settings: Settings) -> AsyncIterator[FakeGoogleSpeech]:
    whisper = shared_transcriber_for(settings)

    async def recognize(samples: np.ndarray) -> str:
        return (await whisper.transcribe_scored_async(samples)).text

    server = FakeGoogleSpeech(recognize)
    server.host = await server.start()
    yield server
    await server.stop()


def with_cloud_voice(settings: Settings, host: str, tmp_path: Path) -> Settings:
    """MODEL_BACKEND=cloud with the Google voice pointed at the fake (the model itself unreachable:
    the tests give the session the mock brain, and the second opinion fails quietly)."""
    key = tmp_path / "service-account.json"
    key.write_text("{}")  # never read: the emulator gets no credentials
    voice = settings.voice.model_copy(
        update={
            "google_cloud_project": "clinic-project",
            "google_application_credentials": key,
            "google_emulator_host": host,
        }
    )
    llm = settings.llm.model_copy(
        update={
            "google_api_key": SecretStr("test"),
            "gemini_base_url": "http://127.0.0.1:9",
            "timeout_s": 2.0,
        }
    )
    return settings.model_copy(update={"model_backend": "cloud", "voice": voice, "llm": llm})


def _said(line: str) -> list[Frame]:
    return [LLMFullResponseStartFrame(), LLMTextFrame(line), LLMFullResponseEndFrame()]


def _seconds(frames: list[Frame], rate: int) -> float:
    return sum(len(f.audio) for f in frames if isinstance(f, TTSAudioRawFrame)) / 2 / rate


# --- which voice ------------------------------------------------------------------------------


def test_the_local_voice_stays_the_default(settings: Settings, tmp_path: Path) -> None:
    assert cloud_voice(settings) is None
    assert isinstance(listening_processors(settings)[1]._transcriber, Transcriber)  # Whisper
    assert isinstance(make_tts(settings), SafePiperTTSService)
    # A Google project left in the environment of a local-model clinic sends no audio away.
    local = with_cloud_voice(settings, "127.0.0.1:1", tmp_path).model_copy(update={"model_backend": "local"})
    assert cloud_voice(local) is None
    assert isinstance(make_tts(local), SafePiperTTSService)


async def test_the_cloud_backend_with_a_project_hears_and_speaks_with_google(
    settings: Settings, tmp_path: Path
) -> None:
    cloud = with_cloud_voice(settings, "127.0.0.1:1", tmp_path)
    assert isinstance(listening_processors(cloud)[1]._transcriber, GoogleTranscriber)
    assert isinstance(make_tts(cloud), SafeGoogleTTSService)


def test_a_missing_key_file_stops_the_start_and_the_emulator_must_be_local(
    settings: Settings, tmp_path: Path
) -> None:
    cloud = with_cloud_voice(settings, "127.0.0.1:1", tmp_path)
    real = cloud.model_copy(
        update={
            "voice": cloud.voice.model_copy(
                update={
                    "google_emulator_host": None,
                    "google_application_credentials": tmp_path / "gone.json",
                }
            )
        }
    )
    with pytest.raises(ConfigError, match="not a readable file"):
        cloud_voice(real)
    with pytest.raises(ValidationError, match="loopback"):
        VoiceSettings(google_emulator_host="speech.example.org:443")  # patient audio in plaintext


# --- hearing ----------------------------------------------------------------------------------


async def test_a_phrase_goes_to_google_and_its_words_come_back(
    fake: FakeGoogleSpeech, settings: Settings, speak: Callable[..., Path], tmp_path: Path
) -> None:
    cloud = cloud_voice(with_cloud_voice(settings, fake.host, tmp_path))
    assert cloud is not None
    samples = read_mono_int16(speak("The mole on my back is bleeding."), INPUT_RATE)

    heard = await cloud.transcriber().transcribe_scored_async(samples, prompt="earlier words")

    [request] = fake.recognized
    assert request.recognizer == "projects/clinic-project/locations/global/recognizers/_"
    assert request.config.explicit_decoding_config.sample_rate_hertz == INPUT_RATE
    assert request.content == samples.tobytes()  # the patient's audio, as it was
    assert "bleeding" in heard.text.lower()
    assert heard.avg_logprob == pytest.approx(np.log(0.92))  # Google's confidence, as a log-probability


async def test_google_failing_to_hear_raises_rather_than_hearing_nothing(
    fake: FakeGoogleSpeech, settings: Settings, tmp_path: Path
) -> None:
    cloud = cloud_voice(with_cloud_voice(settings, fake.host, tmp_path))
    assert cloud is not None
    fake.stt_fails = True
    with pytest.raises(Exception, match="down"):
        await cloud.transcriber().transcribe_scored_async(np.zeros(INPUT_RATE, dtype=np.int16))


# --- speaking ---------------------------------------------------------------------------------


async def test_the_agents_words_reach_google_and_its_audio_plays(
    fake: FakeGoogleSpeech, settings: Settings, tmp_path: Path
) -> None:
    tts = make_tts(with_cloud_voice(settings, fake.host, tmp_path))
    down, up = await run_test(
        tts,
        frames_to_send=_said("Your rash sounds mild. How long have you had it?"),
        pipeline_params=PipelineParams(audio_out_sample_rate=24000),
    )
    assert fake.synthesized == ["Your rash sounds mild.", "How long have you had it?"]
    assert fake.voices[0] == "en-US-Chirp3-HD-Charon"
    assert _seconds(down, 24000) == pytest.approx(47 * 0.04, abs=0.05)  # the fake's audio, all of it
    assert not [f for f in up if isinstance(f, ErrorFrame)]


def _kept_audio_played() -> float:
    return REGISTRY.get_sample_value("safety_audio_played_total") or 0.0


@pytest.mark.parametrize("failure", ["outage", "hang"])
async def test_google_failing_on_the_emergency_line_plays_the_audio_kept_at_start_up(
    failure: str,
    fake: FakeGoogleSpeech,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    number = "000"  # this test's own kept audio
    settings = settings.model_copy(
        update={"safety": settings.safety.model_copy(update={"emergency_number": number})}
    )
    line = escalation_message(Urgency.EMERGENCY, number)
    prepare_safety_audio(voice_model(settings), number)  # start-up, with Piper
    monkeypatch.setattr(google_voice, "SYNTHESIS_STALL_S", 0.5)
    if failure == "outage":
        fake.tts_fails_on = lambda text: True
    else:
        fake.tts_hangs = True
    before = _kept_audio_played()

    tts = make_tts(with_cloud_voice(settings, fake.host, tmp_path))
    down, up = await run_test(
        tts,
        frames_to_send=[*_said(line), SleepFrame(sleep=0.5)],
        pipeline_params=PipelineParams(audio_out_sample_rate=16000),
    )
    assert fake.synthesized[0] == sentences(line)[0]  # Google was asked first
    assert _seconds(down, 16000) > 5.0  # the whole emergency line, in Piper's kept voice
    assert _kept_audio_played() - before == len(sentences(line))
    assert any(isinstance(f, ErrorFrame) for f in up)  # and the failure goes to the fail-safe


# --- whole sessions, through the product ------------------------------------------------------


@pytest.mark.slow
async def test_a_red_flag_heard_by_google_escalates_and_the_reply_is_spoken_by_google(
    fake: FakeGoogleSpeech, settings: Settings, speak: Callable[..., Path], tmp_path: Path
) -> None:
    cloud = with_cloud_voice(settings, fake.host, tmp_path)
    turn = speak("The mole on my back has started bleeding.", lead_s=0.3, tail_s=0.5)
    result = await run_replay([turn], tmp_path / "out", settings=cloud, backend=InterviewBackend())

    assert fake.recognized and any("bleeding" in words.lower() for words in fake.heard)
    patient = next(t for t in result["turns"] if t["role"] == "patient")
    assert "bleeding" in patient["text"].lower()
    assert result["escalation"]["level"] == "urgent"
    said = " ".join(fake.synthesized)
    assert "not a diagnosis" in said and "connecting you with a clinician" in said  # Google spoke
    [record] = [json.loads(p.read_text()) for p in cloud.escalations_dir.glob("*.json")]
    assert record["rule_ids"] == ["changing_mole"]


@pytest.mark.slow
async def test_google_speech_to_text_failing_mid_session_is_said_and_escalated_never_silent(
    fake: FakeGoogleSpeech, settings: Settings, speak: Callable[..., Path], tmp_path: Path
) -> None:
    cloud = with_cloud_voice(settings, fake.host, tmp_path)
    fake.stt_fails = True
    turn = speak("I have an itchy rash on my arm.", lead_s=0.3, tail_s=0.5)
    result = await run_replay([turn], tmp_path / "out", settings=cloud, backend=InterviewBackend())

    assert fake.recognized  # the turn went to Google, which failed
    said = " ".join(fake.synthesized)
    assert FAILURE_PREFIX in said and "connecting you with a clinician" in said
    assert result["escalation"] is not None
    [record] = [json.loads(p.read_text()) for p in cloud.escalations_dir.glob("*.json")]
    assert record["rule_ids"] == ["system_failure"]
