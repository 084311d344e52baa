"""The settings object.

Precedence, highest first: keyword arguments, environment variables, ``.env``, the YAML file of
the environment (``configs/dev.yaml`` for ``APP_ENV=development`` ...), the defaults below.
Nested values use ``__`` in variable names (``LLM__DEVICE=cuda``), as in the runbook.
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = Path(__file__).resolve().parent
ENV_FILES = {"development": "dev.yaml", "staging": "staging.yaml", "production": "production.yaml"}
AppEnv = Literal["development", "staging", "production"]


MIN_SECRET_KEY_CHARS = 32
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")  # logging's levels, by name
MINUTE, HOUR = 60.0, 3600.0


class ConfigError(RuntimeError):
    """The configuration cannot be used; the message is one line that says why."""


def _duration(variable: str, value: float, most: float) -> float:
    """A duration in seconds, more than 0 and at most ``most`` (seconds, not years)."""
    if not 0 < value <= most:
        raise ValueError(f"{variable} must be more than 0 and at most {most:g} seconds, not {value:g}")
    return value


def _plain_http_to_another_host(url: str | None) -> bool:
    """An ``http://`` URL whose host is not this machine (the link is readable on the way)."""
    if not url:
        return False
    parts = urlsplit(url)
    if parts.scheme.lower() != "http":
        return False
    host = (parts.hostname or "").lower()
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


class LLMSettings(BaseModel):
    medgemma_model_id: str = "google/medgemma-4b-it"
    google_api_key: SecretStr | None = None
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str | None = None  # a Gemini-compatible endpoint (tests use a local one)
    # MODEL_BACKEND=openai: MedGemma served elsewhere (vLLM, TGI, llama.cpp server).
    openai_base_url: str | None = None
    openai_model: str = "google/medgemma-4b-it"
    openai_api_key: SecretStr | None = None
    device: str = "cpu"  # cuda | cpu | auto
    max_new_tokens: int = 200
    # A reply that has produced no text after this long fails safe (the agent escalates).
    timeout_s: float = 20.0

    @field_validator("timeout_s")
    @classmethod
    def _timeout_is_bounded(cls, value: float) -> float:
        return _duration("LLM__TIMEOUT_S", value, 2 * MINUTE)


class EmbeddingSettings(BaseModel):
    model_id: str = "google/siglip-so400m-patch14-384"
    device: str = "cpu"
    text_model_dir: Path = Path("models/minilm")


class VoiceSettings(BaseModel):
    whisper_model_size: str = "base"
    whisper_compute_type: str = "int8"
    whisper_threads: int = 2
    piper_voices_dir: Path = Path("models/piper")
    piper_voice: str = "en_US-joe-medium"
    # The consultation's vocabulary, given to Whisper as the text before the patient's words
    # ("... a mole, a rash, sores ..."). Off by default: measured, it made Whisper drop the
    # words of short phrases (docs/safety.md, "Robust to mishearing").
    vocabulary: str = ""
    # Cloud voice, for MODEL_BACKEND=cloud only (pipeline/cloud_voice.py): with a project and a
    # service-account key file, Google speech-to-text hears the patient and Google text-to-speech
    # speaks instead of Whisper and Piper, so the patient's audio leaves the box.
    google_cloud_project: str | None = None
    google_application_credentials: Path | None = None
    # Where Google processes the audio: "global", a multi-region ("eu", "us") or a region.
    google_location: str = "global"
    google_tts_voice: str = "en-US-Chirp3-HD-Charon"  # a streaming (Chirp 3 HD) voice
    # host:port of a local stand-in for both Google APIs (tests, emulators): plaintext, no
    # credentials sent, so only a loopback address is accepted.
    google_emulator_host: str | None = None
    # Silence that ends the patient's turn when the end-of-turn model hears a finished
    # utterance, and when it does not (a pause mid-thought). Transcription starts before either.
    # Chosen by the turn-taking sweep (`python -m tools turns`): against 0.35 / 1.0 s it halved the
    # turns cut into (4 of 8 to 2 of 8) at the same latency (docs/architecture.md).
    complete_stop_s: float = 0.5
    turn_stop_s: float = 1.2
    # Preemptive generation: this long before the silence would end the turn (or at once, when the
    # end-of-turn model hears a finished utterance and the words are in), the turn so far is
    # answered unheard, and the reply plays the moment the silence confirms the end; the patient
    # going on drops it (docs/architecture.md, "Answering before the silence is over").
    preemptive_generation: bool = True
    preempt_lead_s: float = 0.5

    @field_validator("complete_stop_s", "turn_stop_s", "preempt_lead_s")
    @classmethod
    def _silence_is_bounded(cls, value: float, info: ValidationInfo) -> float:
        return _duration(f"VOICE__{info.field_name.upper()}", value, 10.0)

    @field_validator("google_emulator_host")
    @classmethod
    def _emulator_is_local(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, _, port = value.rpartition(":")
        try:
            local = ipaddress.ip_address(host.strip("[]")).is_loopback and port.isdigit()
        except ValueError:
            local = host == "localhost" and port.isdigit()
        if not local:
            raise ValueError(f"VOICE__GOOGLE_EMULATOR_HOST must be a loopback host:port, not {value!r}")
        return value


class SafetySettings(BaseModel):
    emergency_number: str = "911"
    # The disclaimer is repeated on an assessing turn at most this often (in agent turns).
    disclaimer_every_turns: int = 3
    # Red flags read by sound (agent/hearing.py) and by meaning (agent/semantic_flags.py) as
    # well as by the words transcribed. Off only to measure each reading on its own.
    sounds_like: bool = True
    semantic_detector: bool = True

    @field_validator("emergency_number")
    @classmethod
    def _emergency_number_is_dialable(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9]{2,6}", value):
            raise ValueError(f"SAFETY__EMERGENCY_NUMBER must be 2 to 6 digits (911, 112, 999), not {value!r}")
        return value


class SipSettings(BaseModel):
    """The phone bridge (media/sip): a SIP user agent server for trunks and PBXs."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 5060
    transports: list[Literal["udp", "tcp"]] = Field(default_factory=lambda: ["udp", "tcp"])
    public_address: str | None = None  # the address written into SDP; defaults to host
    rtp_port_min: int = 20000
    rtp_port_max: int = 20999
    max_calls: int = 8
    rtp_timeout_s: float = 30.0
    # Who may call: trunk addresses or networks (CIDR), and/or digest credentials.
    allowed_peers: list[str] = Field(default_factory=lambda: ["127.0.0.0/8"])
    digest_username: str | None = None
    digest_password: SecretStr | None = None
    realm: str = "patient-advocacy-agent"
    digest_allow_md5: bool = False  # SHA-256 only unless an old trunk needs MD5 (RFC 7616)
    tcp_connections_per_address: int = Field(default=16, ge=1)  # open SIP/TCP connections per peer IP

    @field_validator("rtp_timeout_s")
    @classmethod
    def _rtp_timeout_is_bounded(cls, value: float) -> float:
        return _duration("SIP__RTP_TIMEOUT_S", value, 10 * MINUTE)

    @field_validator("allowed_peers")
    @classmethod
    def _peers_are_networks(cls, value: list[str]) -> list[str]:
        for peer in value:
            try:
                ipaddress.ip_network(peer, strict=False)
            except ValueError:
                raise ValueError(f"SIP__ALLOWED_PEERS must list IP networks (CIDR), not {peer!r}") from None
        return value

    def open_to_everyone(self) -> bool:
        """Any address may call: the allow-list holds a /0 and no digest credentials are set."""
        everything = any(ipaddress.ip_network(p, strict=False).prefixlen == 0 for p in self.allowed_peers)
        password = self.digest_password.get_secret_value() if self.digest_password else ""
        digest = bool(self.digest_username and password)
        return everything and not digest


class ClinicianAccount(BaseModel):
    username: str
    display_name: str
    password_hash: str  # argon2, from `python -m web.accounts hash`


class ClinicianSettings(BaseModel):
    accounts: list[ClinicianAccount] = Field(default_factory=list)
    accounts_file: Path = Path("var/clinicians.json")
    session_max_age_s: int = 8 * 3600
    # A console session not used for this long is refused: the clinician signs in again.
    session_idle_timeout_s: int = 30 * 60
    patient_token_ttl_s: int = 2 * 3600
    audit_log: Path = Path("var/audit.log")
    reassure_every_s: float = 45.0
    repeat_emergency_after_s: float = 180.0

    @field_validator("session_max_age_s", "session_idle_timeout_s", "patient_token_ttl_s")
    @classmethod
    def _ages_are_bounded(cls, value: int, info: ValidationInfo) -> int:
        return int(_duration(f"CLINICIAN__{info.field_name.upper()}", value, 24 * HOUR))

    @field_validator("reassure_every_s", "repeat_emergency_after_s")
    @classmethod
    def _waits_are_bounded(cls, value: float, info: ValidationInfo) -> float:
        return _duration(f"CLINICIAN__{info.field_name.upper()}", value, 30 * MINUTE)


class EscalationSettings(BaseModel):
    """The stored escalation records (``ESCALATIONS_DIR``): how long an ended one is kept."""

    # ``python -m web.purge`` deletes ended records older than this (by when they ended).
    retention_days: int = 30

    @field_validator("retention_days")
    @classmethod
    def _retention_is_positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError(f"ESCALATIONS__RETENTION_DAYS must be more than 0 days, not {value}")
        return value


class SessionSettings(BaseModel):
    """Admission: how many patient sessions run at once, and how often one address may ask."""

    # Browser and phone sessions together, counting offers still being set up. Measured on two
    # cores (`python -m tools capacity`, 2026-12-02): two patients at once were answered with a
    # voice-to-voice p95 of 1.8 s, under the 2 s service level; four, 4.0 s. Measure other machines.
    max_concurrent: int = Field(default=2, ge=1)
    busy_retry_after_s: int = Field(default=30, ge=1)  # the Retry-After of "all lines are busy"
    # A browser whose connection (ICE) is not up this long after its offer frees its line.
    connect_deadline_s: float = 20.0
    # The session registry (web/session_registry.py): a replica silent this long is dead, and its
    # sessions lost; a session's resume point is kept this long after its last turn, for a
    # patient whose page reconnects (to any replica) after a dropped network or a dead replica.
    registry_ttl_s: float = Field(default=15.0, ge=1.0, le=300.0)
    resume_ttl_s: float = Field(default=1800.0, ge=60.0, le=86400.0)
    # Per client address, in a moving one-minute window.
    offers_per_minute: int = Field(default=10, ge=1)  # POST /api/offer
    clinician_requests_per_minute: int = Field(default=6, ge=1)  # the patient's clinician button
    sign_ins_per_minute: int = Field(default=20, ge=1)  # POST /clinician/login, right or wrong
    # HAProxy's agent check (web/capacity_agent.py): the TCP port, on HOST, where this replica
    # tells the load balancer how many of its lines are free. 0 opens none (no load balancer).
    agent_check_port: int = Field(default=0, ge=0, le=65535)

    @field_validator("connect_deadline_s")
    @classmethod
    def _deadline_is_bounded(cls, value: float) -> float:
        return _duration("SESSIONS__CONNECT_DEADLINE_S", value, 300)


TURN_SCHEMES = ("turn:", "turns:")
STUN_SCHEMES = ("stun:", "stuns:")


class TurnSettings(BaseModel):
    """TURN relays (coturn) for browsers that cannot reach this host directly (docs/rooms.md).

    Unset (no ``TURN__URLS``), pages and server gather their own addresses only, as on a LAN.
    Set, every session gets credentials minted from ``TURN__SHARED_SECRET`` (coturn's
    ``use-auth-secret``, the TURN REST API) that expire ``TURN__TTL_S`` after they are handed out.
    """

    urls: list[str] = Field(default_factory=list)  # ["turn:turn.example.org:3478?transport=udp"]
    stun_urls: list[str] = Field(default_factory=list)  # ["stun:turn.example.org:3478"], optional
    shared_secret: SecretStr | None = None  # coturn's static-auth-secret
    # A relay whose credential has expired is not refreshed (coturn refuses the refresh), so this is
    # longer than the longest consultation, and short enough that a leaked one is soon useless.
    ttl_s: int = 3600
    relay_only: bool = False  # pages use the relay and nothing else (iceTransportPolicy "relay")

    @field_validator("urls", "stun_urls")
    @classmethod
    def _urls_have_their_scheme(cls, value: list[str], info: ValidationInfo) -> list[str]:
        schemes = TURN_SCHEMES if info.field_name == "urls" else STUN_SCHEMES
        urls = [url.strip() for url in value if url.strip()]
        for url in urls:
            if not url.lower().startswith(schemes):
                raise ValueError(
                    f"TURN__{info.field_name.upper()} must list {' or '.join(schemes)} URLs, not {url!r}"
                )
        return urls

    @field_validator("ttl_s")
    @classmethod
    def _ttl_is_bounded(cls, value: int) -> int:
        if value < MINUTE:
            raise ValueError(f"TURN__TTL_S must be at least {MINUTE:g} seconds, not {value}")
        return int(_duration("TURN__TTL_S", value, 24 * HOUR))

    @model_validator(mode="after")
    def _relays_have_a_secret(self) -> TurnSettings:
        secret = self.shared_secret.get_secret_value() if self.shared_secret else ""
        if self.urls and not secret.strip():
            raise ValueError("TURN__URLS needs TURN__SHARED_SECRET (coturn's static-auth-secret)")
        if self.relay_only and not self.urls:
            raise ValueError("TURN__RELAY_ONLY needs TURN__URLS: without a relay no browser could connect")
        return self


class LiveKitSettings(BaseModel):
    """A LiveKit server the clinic already runs, for rooms across machines (docs/rooms.md).

    Unset (no ``LIVEKIT__URL``), rooms are this server's own, peer to peer. Set, this server mints
    the access tokens of the patient, the clinician and the agent for a session's LiveKit room,
    signed with ``LIVEKIT__API_SECRET``, each with its own explicit grants and expiring
    ``LIVEKIT__TOKEN_TTL_S`` after it is minted (a token only needs to last until it is used to
    join; the connection then outlives it). ``LIVEKIT__ENABLED=true`` (it needs the URL) moves new
    patient sessions and clinicians' joins to LiveKit rooms; false (the default), they stay peer
    to peer even with a URL set, so credentials can be put in place before the switch.
    """

    enabled: bool = False
    url: str | None = None  # wss://livekit.example.org
    api_key: str | None = None
    api_secret: SecretStr | None = None
    token_ttl_s: int = 600
    agent_name: str = "patient-advocacy-agent"  # the worker the server dispatches into a room

    @field_validator("url")
    @classmethod
    def _url_is_livekit(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value is not None and not value.lower().startswith(("wss://", "ws://", "https://", "http://")):
            raise ValueError("LIVEKIT__URL must be a ws(s):// or http(s):// URL")
        return value

    @field_validator("token_ttl_s")
    @classmethod
    def _ttl_is_short(cls, value: int) -> int:
        if value < 30:
            raise ValueError(f"LIVEKIT__TOKEN_TTL_S must be at least 30 seconds, not {value}")
        return int(_duration("LIVEKIT__TOKEN_TTL_S", value, HOUR))

    @model_validator(mode="after")
    def _server_has_credentials(self) -> LiveKitSettings:
        secret = self.api_secret.get_secret_value() if self.api_secret else ""
        if self.url and not (self.api_key and secret.strip()):
            raise ValueError("LIVEKIT__URL needs LIVEKIT__API_KEY and LIVEKIT__API_SECRET")
        if self.enabled and not self.url:
            raise ValueError("LIVEKIT__ENABLED needs LIVEKIT__URL (and its API key and secret)")
        return self


class AlertSettings(BaseModel):
    """Where the fired alerts are read (``web/alerts``: ``python -m web.alerts``, ``/health/details``).

    With ``ALERTS__PROMETHEUS_URL`` (or else ``ALERTS__ALERTMANAGER_URL``) they are read from there;
    without, and whenever that source does not answer, from this process's own evaluation of the
    same rule files over its own metrics, every ``ALERTS__EVALUATION_INTERVAL_S``. Either way a
    critical alert of the local evaluation makes ``/health`` say ``degraded``.
    """

    prometheus_url: str | None = None  # http://prometheus:9090 (its /api/v1/alerts)
    alertmanager_url: str | None = None  # http://alertmanager:9093 (its /api/v2/alerts)
    # The rule files Prometheus loads: add the copied opening-hours file here as in rule_files.
    rule_files: list[Path] = Field(default_factory=lambda: [Path("configs/prometheus/alerts.yml")])
    evaluation_interval_s: float = 15.0
    read_timeout_s: float = 3.0

    @field_validator("prometheus_url", "alertmanager_url")
    @classmethod
    def _url_is_http(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.strip().lower().startswith(("http://", "https://")):
            raise ValueError(f"ALERTS__{(info.field_name or '').upper()} must be an http(s):// URL")
        return value.strip()

    @field_validator("evaluation_interval_s", "read_timeout_s")
    @classmethod
    def _short(cls, value: float, info: ValidationInfo) -> float:
        return _duration(f"ALERTS__{(info.field_name or '').upper()}", value, 5 * MINUTE)


class TracingSettings(BaseModel):
    """Where the turn traces go (``pipeline/tracing.py``): an OpenTelemetry collector, over OTLP/HTTP.

    Off unless an endpoint is set: ``TRACING__OTLP_ENDPOINT``, or else the standard
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (read by this object, like every variable). Either is the
    collector's base URL (``http://otel-collector:4318``); the spans go to its ``/v1/traces``. The
    spans carry timings, counts and categories only, never what anyone said or showed.
    """

    otlp_endpoint: str | None = None
    service_name: str = "patient-advocacy-agent"
    export_timeout_s: float = 5.0

    @field_validator("otlp_endpoint")
    @classmethod
    def _endpoint_is_http(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.strip().lower().startswith(("http://", "https://")):
            raise ValueError("TRACING__OTLP_ENDPOINT must be an http(s):// URL (OTLP over HTTP)")
        return value.strip()

    @field_validator("export_timeout_s")
    @classmethod
    def _short(cls, value: float) -> float:
        return _duration("TRACING__EXPORT_TIMEOUT_S", value, MINUTE)


class Settings(BaseSettings):
    """Everything the service reads at start-up; nothing else reads the environment."""

    model_config = SettingsConfigDict(
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        case_sensitive=False,
    )

    app_env: AppEnv = "development"
    model_backend: Literal["mock", "local", "cloud", "openai"] = "mock"
    use_mocks: bool = False
    secret_key: SecretStr | None = None
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "text"
    host: str = "127.0.0.1"
    port: int = 8000
    # Any request body over this is refused with 413 before it is read (an SDP offer is a few KB).
    max_request_bytes: int = Field(default=64 * 1024, ge=1024)
    # Bearer token for GET /health/details and GET /metrics; required in production.
    monitoring_token: SecretStr | None = None
    # Shared state for running several replicas (web/shared): redis://, rediss:// or unix://.
    # Unset, everything shared lives in this process's memory (one replica, no Redis to run).
    redis_url: str | None = None
    # Proxies whose X-Forwarded-For names the patient (uvicorn's own variable and format: addresses
    # or networks, comma-separated, "*" for any). Behind HAProxy, rate limits count each patient,
    # not the proxy; a header from any other peer is ignored.
    forwarded_allow_ips: str = "127.0.0.1"
    # This replica's name in the session registry; unset: host name and process id.
    replica_id: str | None = None

    models_dir: Path = Path("models")
    scin_dir: Path = Path("data/raw/scin")
    vector_store_dir: Path = Path("data/chroma")
    escalations_dir: Path = Path("var/escalations")
    vector_store_top_k: int = 10
    embedding_dimension: int = 1152

    llm: LLMSettings = Field(default_factory=LLMSettings)
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    voice: VoiceSettings = Field(default_factory=VoiceSettings)
    safety: SafetySettings = Field(default_factory=SafetySettings)
    sip: SipSettings = Field(default_factory=SipSettings)
    clinician: ClinicianSettings = Field(default_factory=ClinicianSettings)
    sessions: SessionSettings = Field(default_factory=SessionSettings)
    escalations: EscalationSettings = Field(default_factory=EscalationSettings)
    turn: TurnSettings = Field(default_factory=TurnSettings)
    livekit: LiveKitSettings = Field(default_factory=LiveKitSettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    # The OpenTelemetry standard variable, honoured when TRACING__OTLP_ENDPOINT is unset.
    otel_exporter_otlp_endpoint: str | None = None

    @field_validator("log_level")
    @classmethod
    def _log_level_is_known(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {value!r}")
        return level

    @field_validator("redis_url")
    @classmethod
    def _redis_url_is_redis(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None  # REDIS_URL= (empty) means unset
        scheme = urlsplit(value.strip()).scheme.lower()
        if scheme not in ("redis", "rediss", "unix"):
            # The URL may carry a password: name its scheme, never the URL.
            raise ValueError(
                f"REDIS_URL must start with redis://, rediss:// or unix://, not {scheme or 'no'}://"
            )
        return value.strip()

    @model_validator(mode="after")
    def _production_is_strict(self) -> Settings:
        if self.app_env != "production":
            return self
        key = self.secret_key.get_secret_value() if self.secret_key else ""
        if not key:
            raise ValueError("production needs SECRET_KEY")
        if len(key) < MIN_SECRET_KEY_CHARS:
            raise ValueError(f"production needs a SECRET_KEY of at least {MIN_SECRET_KEY_CHARS} characters")
        if self.model_backend == "mock":
            raise ValueError("production cannot run MODEL_BACKEND=mock")
        if self.use_mocks:
            raise ValueError("production cannot run with USE_MOCKS=true")
        if self.log_level == "DEBUG":
            raise ValueError("production cannot log at LOG_LEVEL=DEBUG; set LOG_LEVEL=INFO")
        if self.log_format != "json":
            raise ValueError("production needs LOG_FORMAT=json (one object per line)")
        if self.sip.enabled and self.sip.open_to_everyone():
            raise ValueError(
                "production cannot take SIP calls from every address: list the trunk's networks in "
                "SIP__ALLOWED_PEERS or set SIP__DIGEST_USERNAME and SIP__DIGEST_PASSWORD"
            )
        if _plain_http_to_another_host(self.llm.openai_base_url):
            raise ValueError("production needs an https:// LLM__OPENAI_BASE_URL (http:// only to loopback)")
        if _plain_http_to_another_host(self.llm.gemini_base_url):
            raise ValueError("production needs an https:// LLM__GEMINI_BASE_URL (http:// only to loopback)")
        monitoring = self.monitoring_token.get_secret_value() if self.monitoring_token else ""
        if not monitoring.strip():
            raise ValueError("production needs MONITORING_TOKEN (the bearer token of /metrics)")
        return self

    def path(self, relative: Path) -> Path:
        """A configured path made absolute against the repository root."""
        return relative if relative.is_absolute() else REPO_ROOT / relative

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = _EnvYamlSource(settings_cls, (init_settings, env_settings, dotenv_settings))
        return init_settings, env_settings, dotenv_settings, yaml_source


class _EnvYamlSource(PydanticBaseSettingsSource):
    """Reads ``configs/<file of APP_ENV>.yaml``; APP_ENV comes from the higher sources."""

    def __init__(self, settings_cls: type[BaseSettings], higher: tuple[Any, ...]) -> None:
        super().__init__(settings_cls)
        self._higher = higher

    def _app_env(self) -> str:
        for source in self._higher:
            value = source().get("app_env")
            if value:
                return str(value)
        return "development"

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        app_env = self._app_env()
        name = ENV_FILES.get(app_env)
        if name is None:
            return {"app_env": app_env}  # validation reports the unknown environment
        data = yaml.safe_load((CONFIG_DIR / name).read_text()) or {}
        return {key.lower(): value for key, value in data.items()}


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, or raise ConfigError with a one-line reason."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        variable = where.upper().replace(".", "__")
        named = not where or variable in message  # our own messages name the variable already
        raise ConfigError(message if named else f"{where}: {message}") from None


def hub_offline_environment() -> None:
    """Model libraries must never reach for a hub at run time."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
