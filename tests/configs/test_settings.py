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


CHECKED_VARS = [
    "LLM__TIMEOUT_S",
    "LLM__OPENAI_BASE_URL",
    "LLM__GEMINI_BASE_URL",
    "VOICE__COMPLETE_STOP_S",
    "VOICE__TURN_STOP_S",
    "SAFETY__EMERGENCY_NUMBER",
    "SIP__ENABLED",
    "SIP__ALLOWED_PEERS",
    "SIP__DIGEST_USERNAME",
    "SIP__DIGEST_PASSWORD",
    "SIP__RTP_TIMEOUT_S",
    "CLINICIAN__SESSION_MAX_AGE_S",
    "CLINICIAN__PATIENT_TOKEN_TTL_S",
    "CLINICIAN__REASSURE_EVERY_S",
    "CLINICIAN__REPEAT_EMERGENCY_AFTER_S",
    "MONITORING_TOKEN",
    "SESSIONS__MAX_CONCURRENT",
    "SESSIONS__CONNECT_DEADLINE_S",
]
LONG_KEY = "x" * 32
PRODUCTION = {"APP_ENV": "production", "SECRET_KEY": LONG_KEY, "MONITORING_TOKEN": "a monitoring token"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in RUNBOOK_VARS + CHECKED_VARS:
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
        ({"SECRET_KEY": LONG_KEY, "MODEL_BACKEND": "mock"}, "production cannot run MODEL_BACKEND=mock"),
        (
            {"SECRET_KEY": LONG_KEY, "MODEL_BACKEND": "local", "USE_MOCKS": "true"},
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


def set_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def refusal(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> str:
    set_env(monkeypatch, env)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    return str(caught.value)


def test_production_starts_from_its_yaml_with_the_runbook_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, PRODUCTION)
    s = load_settings()
    assert (s.model_backend, s.log_level, s.log_format, s.sip.enabled) == ("local", "INFO", "json", False)


@pytest.mark.parametrize(
    ("env", "variable", "fix"),
    [
        ({"SECRET_KEY": "x" * 31}, "SECRET_KEY", "at least 32 characters"),
        ({"LOG_LEVEL": "debug"}, "LOG_LEVEL=DEBUG", "set LOG_LEVEL=INFO"),
        ({"LOG_FORMAT": "text"}, "LOG_FORMAT", "LOG_FORMAT=json"),
        (
            {"SIP__ENABLED": "true", "SIP__ALLOWED_PEERS": '["0.0.0.0/0"]'},
            "SIP__ALLOWED_PEERS",
            "SIP__DIGEST_",
        ),
        (
            {"SIP__ENABLED": "true", "SIP__ALLOWED_PEERS": '["10.0.0.0/8", "::/0"]'},
            "SIP__ALLOWED_PEERS",
            "DIGEST",
        ),
        (
            {"SIP__ENABLED": "true", "SIP__ALLOWED_PEERS": '["0.0.0.0/0"]', "SIP__DIGEST_USERNAME": "trunk"},
            "SIP__DIGEST_PASSWORD",
            "SIP__ALLOWED_PEERS",
        ),
        (
            {"MODEL_BACKEND": "openai", "LLM__OPENAI_BASE_URL": "http://gpu-host:8000/v1"},
            "LLM__OPENAI_BASE_URL",
            "https://",
        ),
        ({"LLM__OPENAI_BASE_URL": "http://10.0.0.7:8000/v1"}, "LLM__OPENAI_BASE_URL", "https://"),
        ({"LLM__GEMINI_BASE_URL": "http://gemini.example.org"}, "LLM__GEMINI_BASE_URL", "https://"),
    ],
)
def test_production_refuses_each_unsafe_setting_with_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, env: dict, variable: str, fix: str
) -> None:
    message = refusal(monkeypatch, PRODUCTION | env)
    assert variable in message and fix in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "env",
    [
        {"SIP__ENABLED": "true"},  # the loopback allow-list
        {"SIP__ENABLED": "true", "SIP__ALLOWED_PEERS": '["203.0.113.0/24"]'},
        {
            "SIP__ENABLED": "true",
            "SIP__ALLOWED_PEERS": '["0.0.0.0/0"]',
            "SIP__DIGEST_USERNAME": "trunk",
            "SIP__DIGEST_PASSWORD": "a long trunk password",
        },
        {"MODEL_BACKEND": "openai", "LLM__OPENAI_BASE_URL": "https://gpu-host:8000/v1"},
        {"MODEL_BACKEND": "openai", "LLM__OPENAI_BASE_URL": "http://127.0.0.1:8000/v1"},
        {"MODEL_BACKEND": "openai", "LLM__OPENAI_BASE_URL": "http://localhost:8000/v1"},
        {"MODEL_BACKEND": "openai", "LLM__OPENAI_BASE_URL": "http://[::1]:8000/v1"},
        {"LOG_LEVEL": "warning"},
    ],
)
def test_production_accepts_the_safe_shapes_of_the_same_settings(
    monkeypatch: pytest.MonkeyPatch, env: dict
) -> None:
    set_env(monkeypatch, PRODUCTION | env)
    assert load_settings().app_env == "production"


def test_development_still_accepts_what_only_production_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(
        monkeypatch,
        {
            "SECRET_KEY": "short",
            "LOG_LEVEL": "debug",
            "SIP__ENABLED": "true",
            "SIP__ALLOWED_PEERS": '["0.0.0.0/0"]',
            "LLM__OPENAI_BASE_URL": "http://gpu-host:8000/v1",
        },
    )
    s = load_settings()
    assert (s.log_level, s.log_format, s.sip.allowed_peers) == ("DEBUG", "text", ["0.0.0.0/0"])


@pytest.mark.parametrize("app_env", ["development", "staging", "production"])
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOG_LEVEL", "LOUD"),
        ("LOG_LEVEL", "WARN"),
        ("LLM__TIMEOUT_S", "0"),
        ("LLM__TIMEOUT_S", "-5"),
        ("LLM__TIMEOUT_S", "121"),
        ("LLM__TIMEOUT_S", "31536000"),
        ("VOICE__COMPLETE_STOP_S", "0"),
        ("VOICE__TURN_STOP_S", "3600"),
        ("SIP__RTP_TIMEOUT_S", "0"),
        ("SIP__RTP_TIMEOUT_S", "86400"),
        ("SESSIONS__CONNECT_DEADLINE_S", "0"),
        ("SESSIONS__CONNECT_DEADLINE_S", "3600"),
        ("CLINICIAN__SESSION_MAX_AGE_S", "0"),
        ("CLINICIAN__SESSION_MAX_AGE_S", "31536000"),
        ("CLINICIAN__PATIENT_TOKEN_TTL_S", "-1"),
        ("CLINICIAN__REASSURE_EVERY_S", "0"),
        ("CLINICIAN__REASSURE_EVERY_S", "-1"),
        ("CLINICIAN__REPEAT_EMERGENCY_AFTER_S", "0"),
        ("CLINICIAN__REPEAT_EMERGENCY_AFTER_S", "1e9"),
        ("SAFETY__EMERGENCY_NUMBER", ""),
        ("SAFETY__EMERGENCY_NUMBER", "1"),
        ("SAFETY__EMERGENCY_NUMBER", "1234567"),
        ("SAFETY__EMERGENCY_NUMBER", "91l"),
        ("SAFETY__EMERGENCY_NUMBER", "+44 999"),
        ("SIP__ALLOWED_PEERS", '["trunk.example.org"]'),
    ],
)
def test_every_environment_refuses_values_that_break_the_agent_later(
    monkeypatch: pytest.MonkeyPatch, app_env: str, name: str, value: str
) -> None:
    message = refusal(monkeypatch, PRODUCTION | {"APP_ENV": app_env, name: value})
    assert message.startswith(name), message  # one line that begins with the variable to fix


@pytest.mark.parametrize(
    ("name", "value", "read"),
    [
        ("LOG_LEVEL", "error", lambda s: s.log_level == "ERROR"),
        ("LLM__TIMEOUT_S", "120", lambda s: s.llm.timeout_s == 120),
        ("SAFETY__EMERGENCY_NUMBER", "000", lambda s: s.safety.emergency_number == "000"),
        ("SAFETY__EMERGENCY_NUMBER", "112", lambda s: s.safety.emergency_number == "112"),
        ("CLINICIAN__REASSURE_EVERY_S", "0.2", lambda s: s.clinician.reassure_every_s == 0.2),
    ],
)
def test_the_edges_of_the_bounds_are_accepted(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, read
) -> None:
    monkeypatch.setenv(name, value)
    assert read(load_settings())


def test_the_server_refuses_to_start_in_production_without_a_secret_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in RUNBOOK_VARS}
    env["APP_ENV"] = "production"
    proc = subprocess.run(
        [sys.executable, "-m", "web"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "refusing to start: production needs SECRET_KEY"


def test_the_server_refuses_to_start_with_an_unknown_log_level(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in RUNBOOK_VARS + CHECKED_VARS}
    env["LOG_LEVEL"] = "LOUD"
    proc = subprocess.run(
        [sys.executable, "-m", "web"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "refusing to start: LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, not 'LOUD'"
    )


@pytest.mark.parametrize("token", [None, "", "   "])
def test_production_refuses_to_start_without_a_monitoring_token(
    monkeypatch: pytest.MonkeyPatch, token: str | None
) -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "MONITORING_TOKEN"}
    if token is not None:
        env["MONITORING_TOKEN"] = token
    message = refusal(monkeypatch, env)
    assert "MONITORING_TOKEN" in message and "\n" not in message


def test_development_runs_without_a_monitoring_token_and_caps_sessions_at_three(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    s = load_settings()
    assert s.monitoring_token is None and s.sessions.max_concurrent == 2
    monkeypatch.setenv("SESSIONS__MAX_CONCURRENT", "5")
    assert load_settings().sessions.max_concurrent == 5
    monkeypatch.setenv("SESSIONS__MAX_CONCURRENT", "0")
    with pytest.raises(ConfigError, match="max_concurrent"):
        load_settings()
