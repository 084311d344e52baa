"""Settings: YAML per environment, overridden by .env and the runbook's variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from configs.settings import ConfigError, load_settings

RUNBOOK_VARS = [
    "APP_ENV",
    "MODEL_BACKEND",
    "USE_MOCKS",
    "SECRET_KEY",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "LLM__MEDGEMMA_MODEL_ID",
    "LLM__GOOGLE_API_KEY",
    "LLM__DEVICE",
    "EMBEDDING__MODEL_ID",
    "EMBEDDING__DEVICE",
    "VOICE__WHISPER_MODEL_SIZE",
    "VOICE__PIPER_VOICES_DIR",
    "VOICE__GOOGLE_CLOUD_PROJECT",
    "VOICE__GOOGLE_APPLICATION_CREDENTIALS",
    "VECTOR_STORE_TOP_K",
    "EMBEDDING_DIMENSION",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in RUNBOOK_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_development_defaults_run_the_mock_brain_on_loopback() -> None:
    settings = load_settings()
    assert settings.app_env == "development"
    assert settings.model_backend == "mock"
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.log_format == "text"


def test_every_runbook_variable_reaches_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "MODEL_BACKEND": "cloud",
        "USE_MOCKS": "true",
        "SECRET_KEY": "s3cret",
        "LOG_LEVEL": "DEBUG",
        "LOG_FORMAT": "json",
        "LLM__MEDGEMMA_MODEL_ID": "/models/medgemma",
        "LLM__GOOGLE_API_KEY": "k",
        "LLM__DEVICE": "cuda",
        "EMBEDDING__MODEL_ID": "/models/siglip",
        "EMBEDDING__DEVICE": "cuda",
        "VOICE__WHISPER_MODEL_SIZE": "small",
        "VOICE__PIPER_VOICES_DIR": "/voices",
        "VOICE__GOOGLE_CLOUD_PROJECT": "proj",
        "VOICE__GOOGLE_APPLICATION_CREDENTIALS": "/c.json",
        "VECTOR_STORE_TOP_K": "7",
        "EMBEDDING_DIMENSION": "768",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    s = load_settings()
    assert (s.model_backend, s.use_mocks, s.secret_key.get_secret_value()) == ("cloud", True, "s3cret")
    assert (s.log_level, s.log_format) == ("DEBUG", "json")
    assert (s.llm.medgemma_model_id, s.llm.google_api_key.get_secret_value(), s.llm.device) == (
        "/models/medgemma",
        "k",
        "cuda",
    )
    assert (s.embedding.model_id, s.embedding.device) == ("/models/siglip", "cuda")
    assert (s.voice.whisper_model_size, str(s.voice.piper_voices_dir)) == ("small", "/voices")
    assert s.voice.google_cloud_project == "proj"
    assert str(s.voice.google_application_credentials) == "/c.json"
    assert (s.vector_store_top_k, s.embedding_dimension) == (7, 768)


def test_a_dotenv_file_is_read_and_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("VECTOR_STORE_TOP_K=3\nLOG_LEVEL=WARNING\n")
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    s = load_settings()
    assert s.vector_store_top_k == 3
    assert s.log_level == "ERROR"


def test_staging_yaml_switches_to_json_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "staging")
    assert load_settings().log_format == "json"


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"MODEL_BACKEND": "local"}, "production needs SECRET_KEY"),
        ({"SECRET_KEY": "k", "MODEL_BACKEND": "mock"}, "production cannot run MODEL_BACKEND=mock"),
        (
            {"SECRET_KEY": "k", "MODEL_BACKEND": "local", "USE_MOCKS": "true"},
            "production cannot run with USE_MOCKS=true",
        ),
    ],
)
def test_production_refuses_unsafe_settings(monkeypatch: pytest.MonkeyPatch, env: dict, reason: str) -> None:
    monkeypatch.setenv("APP_ENV", "production")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=reason):
        load_settings()


def test_the_server_refuses_to_start_in_production_without_a_secret_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in RUNBOOK_VARS}
    env["APP_ENV"] = "production"
    proc = subprocess.run(
        [sys.executable, "-m", "web"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "refusing to start: production needs SECRET_KEY"
