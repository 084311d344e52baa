"""docker-compose.yml and the HAProxy config it mounts: valid for the real tools, and consistent.

What runs here: Debian's ``docker-compose`` (1.29) resolves and validates the compose file
(``config`` rejects unknown keys and missing required variables), and Debian's ``haproxy -c``
checks configs/haproxy/haproxy.cfg, Debian's ``promtool check config`` the stack's Prometheus
config (its paths mapped through the compose mounts), and the Grafana provisioning is checked to
load the real dashboard from the real Prometheus. What does not: running the stack. The image is
built and its /health checked by ``scripts/container_check.sh`` (podman; ``scripts/test.sh`` runs
it as root; docs/runbook.md, "Running with compose").
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from configs.settings import REPO_ROOT, Settings, load_settings
from tests.debian_tools import debian_tool

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
HAPROXY_CFG = REPO_ROOT / "configs" / "haproxy" / "haproxy.cfg"
OUR_IMAGE = "patient-advocacy-agent:latest"
SECRETS = {
    "SECRET_KEY": "k" * 48,
    "TURN__SHARED_SECRET": "turn-secret-for-the-test",
    "MONITORING_TOKEN": "monitoring-token-for-the-test",  # Prometheus scrapes /metrics with it
}
PROMETHEUS_DIR = REPO_ROOT / "configs" / "prometheus"
GRAFANA_DIR = REPO_ROOT / "configs" / "grafana"
ALL_PROFILES = ("phone", "gpu")


def _compose_config(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``docker-compose config`` with every profile, from ``env`` alone (no .env, no shell vars)."""
    empty = tmp_path / "empty.env"
    empty.write_text("")
    profiles = [arg for profile in ALL_PROFILES for arg in ("--profile", profile)]
    command = [
        debian_tool("docker-compose", "docker-compose"),
        "--env-file",
        str(empty),
        "-f",
        str(COMPOSE_FILE),
    ]
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    return subprocess.run(
        [*command, *profiles, "config"],
        cwd=REPO_ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The services as docker-compose resolves them (anchors merged, variables filled in)."""
    result = _compose_config(tmp_path_factory.mktemp("compose"), SECRETS)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def settings_variables() -> set[str]:
    """Every variable name the settings object reads: ``FIELD`` and ``FIELD__SUBFIELD``."""

    def names(model: type[BaseModel], prefix: str) -> set[str]:
        found: set[str] = set()
        for field, info in model.model_fields.items():
            name = prefix + field.upper()
            found.add(name)
            if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
                found |= names(info.annotation, name + "__")
        return found

    return names(Settings, "")


def test_compose_file_is_valid_and_has_the_whole_stack(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {
        "app-1",
        "app-2",
        "redis",
        "haproxy",
        "coturn",
        "kamailio",
        "sip-bridge-1",
        "sip-bridge-2",
        "medgemma",
        "prometheus",
        "grafana",
    }
    for name in ("kamailio", "sip-bridge-1", "sip-bridge-2"):
        assert services[name]["profiles"] == ["phone"], name
    assert services["medgemma"]["profiles"] == ["gpu"]
    default = {name for name, service in services.items() if not service.get("profiles")}
    assert default == {"app-1", "app-2", "redis", "haproxy", "coturn", "prometheus", "grafana"}
    assert services["haproxy"]["ports"][0]["published"] in (8000, "8000")


def test_compose_refuses_to_start_without_the_shared_secrets(tmp_path: Path) -> None:
    """Two replicas with random keys would refuse each other's sessions: no default is offered."""
    for missing in SECRETS:
        given = {name: value for name, value in SECRETS.items() if name != missing}
        result = _compose_config(tmp_path, given)
        assert result.returncode != 0
        assert missing in result.stderr


def _dockerfile_healthcheck(build: dict[str, Any] | None) -> bool:
    if not build:
        return False
    dockerfile = Path(build["context"]) / build.get("dockerfile", "Dockerfile")
    return any(line.startswith("HEALTHCHECK CMD") for line in dockerfile.read_text().splitlines())


def test_every_service_has_a_health_check(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck")
        if check is None:
            assert _dockerfile_healthcheck(service.get("build")), f"{name} has no health check"
            continue
        assert not check.get("disable"), name
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
    # The replicas are probed on the same /health that HAProxy uses.
    for name in ("app-1", "app-2"):
        assert "/health" in " ".join(services[name]["healthcheck"]["test"])


def test_the_gpu_profile_reserves_a_gpu_and_the_replicas_can_use_it(
    services: dict[str, dict[str, Any]],
) -> None:
    devices = services["medgemma"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    for name, service in services.items():
        if name != "medgemma":
            assert "deploy" not in service, f"{name} reserves something outside the gpu profile"
    # MODEL_BACKEND=openai points the replicas at the GPU service without another setting.
    base_url = services["app-1"]["environment"]["LLM__OPENAI_BASE_URL"]
    assert base_url == "http://medgemma:8000/v1"
    assert "--served-model-name" in services["medgemma"]["command"]
    served = services["medgemma"]["command"][services["medgemma"]["command"].index("--served-model-name") + 1]
    assert served == services["app-1"]["environment"]["LLM__OPENAI_MODEL"]


def test_only_the_runbook_variable_names_are_used(services: dict[str, dict[str, Any]]) -> None:
    known = settings_variables()
    ours = [name for name, service in services.items() if service.get("image") == OUR_IMAGE]
    assert set(ours) == {"app-1", "app-2", "sip-bridge-1", "sip-bridge-2"}
    for name in ours:
        unknown = set(services[name]["environment"]) - known
        assert not unknown, f"{name} sets variables the settings do not read: {sorted(unknown)}"
    # What the file reads from the operator's shell, for every service, third-party ones included.
    interpolated = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text()))
    assert interpolated - known == set(), f"not runbook names: {sorted(interpolated - known)}"
    assert {"SECRET_KEY", "REDIS_URL", "MODEL_BACKEND", "TURN__SHARED_SECRET"} <= known


def test_each_replica_and_bridge_starts_with_its_environment(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The values, not only the names: each of our services' environment is accepted by the settings."""
    for variable in settings_variables():
        monkeypatch.delenv(variable, raising=False)
    for name in ("app-1", "app-2", "sip-bridge-1", "sip-bridge-2"):
        with monkeypatch.context() as scoped:
            for variable, value in services[name]["environment"].items():
                scoped.setenv(variable, str(value))
            settings = load_settings()
        assert settings.redis_url == "redis://redis:6379/0"
        assert settings.turn.urls and settings.turn.shared_secret is not None
        if name.startswith("sip-bridge"):
            assert settings.sip.enabled and settings.sip.host == "0.0.0.0"


def test_the_phone_profile_routes_through_kamailio_to_both_bridges(
    services: dict[str, dict[str, Any]],
) -> None:
    kamailio = services["kamailio"]
    address = kamailio["networks"]["default"]["ipv4_address"]
    listed = (REPO_ROOT / "configs" / "kamailio" / "dispatcher.compose.list").read_text()
    bridges = re.findall(r"^1\s+sip:([a-z0-9-]+):5060", listed, flags=re.MULTILINE)
    assert sorted(bridges) == ["sip-bridge-1", "sip-bridge-2"]
    for bridge in bridges:
        assert kamailio["depends_on"][bridge]["condition"] == "service_healthy"
        peers = yaml.safe_load(services[bridge]["environment"]["SIP__ALLOWED_PEERS"])
        assert f"{address}/32" in peers, f"{bridge} would refuse Kamailio's calls"


def _free_udp_and_tcp_port() -> int:
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise AssertionError("no free port on loopback")


def test_the_bridges_health_check_answers_from_a_real_bridge_and_fails_without_one(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    """The hand-written SIP probe compose declares, run against ``python -m media.sip`` itself."""
    probe = services["sip-bridge-1"]["healthcheck"]["test"]
    assert probe[:3] == ["CMD", ".venv/bin/python", "-c"]
    port = _free_udp_and_tcp_port()
    code = probe[3].replace("5060", str(port))
    env = {
        **os.environ,
        "SIP__ENABLED": "true",
        "SIP__HOST": "127.0.0.1",
        "SIP__PORT": str(port),
        "SIP__RTP_PORT_MIN": "29400",
        "SIP__RTP_PORT_MAX": "29409",
        "ESCALATIONS_DIR": str(tmp_path / "escalations"),
        "CLINICIAN__AUDIT_LOG": str(tmp_path / "audit.log"),
    }
    log = tmp_path / "bridge.log"
    with log.open("w") as output:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "media.sip"],
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while "SIP bridge ready" not in log.read_text() and time.monotonic() < deadline:
            assert bridge.poll() is None, log.read_text()[-2000:]
            time.sleep(0.2)
        assert "SIP bridge ready" in log.read_text(), "the bridge did not start within 90 s"
        check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=15)
        assert check.returncode == 0, check.stderr
    finally:
        bridge.terminate()
        try:
            bridge.wait(timeout=10)
        except subprocess.TimeoutExpired:
            bridge.kill()
            bridge.wait(timeout=5)
    # Nothing answers now: the same probe fails, so a dead bridge is reported unhealthy.
    check = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=15)
    assert check.returncode != 0


def test_haproxy_config_is_valid_and_balances_the_two_replicas(services: dict[str, dict[str, Any]]) -> None:
    haproxy = debian_tool("haproxy", "haproxy")
    # The replicas' names do not resolve here; init-addr lets the check pass without them.
    result = subprocess.run(
        [haproxy, "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Configuration file is valid" in result.stdout + result.stderr
    text = HAPROXY_CFG.read_text()
    servers = re.findall(r"^\s*server\s+(\S+)\s+([a-z0-9-]+):(\d+)\s+cookie\s+(\S+)", text, re.MULTILINE)
    assert [(host, port) for _, host, port, _ in servers] == [("app-1", "8000"), ("app-2", "8000")]
    assert all(host in services for _, host, _, _ in servers)
    assert re.search(r"^\s*option httpchk GET /health$", text, re.MULTILINE)
    assert re.search(r"^\s*balance leastconn$", text, re.MULTILINE)
    assert re.search(r"^\s*cookie SERVERID insert indirect nocache", text, re.MULTILINE)
    # docker-compose 1.29 writes mounts in the short form, source:target:mode.
    mounts = [mount.split(":") for mount in services["haproxy"]["volumes"]]
    assert [Path(mount[0]) for mount in mounts if mount[1].endswith("/haproxy.cfg")] == [HAPROXY_CFG]


# --- monitoring: Prometheus and Grafana -------------------------------------------------------


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (short form, source:target[:mode])."""
    found = {}
    for mount in service["volumes"]:
        source, target = mount.split(":")[:2]
        if source.startswith("/"):
            found[target] = Path(source)
    return found


def _host_path(mounts: dict[str, Path], container_path: str) -> Path | None:
    for target, source in mounts.items():
        if container_path == target or container_path.startswith(target.rstrip("/") + "/"):
            return source / Path(container_path).relative_to(target) if container_path != target else source
    return None


def test_prometheus_scrapes_both_replicas_with_the_token_and_loads_the_alert_rules(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    prometheus = services["prometheus"]
    mounts = _mounts(prometheus)
    config_path = next(
        arg.split("=", 1)[1]
        for arg in " ".join(prometheus["command"]).split()
        if arg.startswith("--config.file=")
    )
    host_config = _host_path(mounts, config_path)
    assert host_config == PROMETHEUS_DIR / "prometheus.yml"
    config = yaml.safe_load(host_config.read_text())
    # The rule files are the repository's alerts.yml, the one promtool unit-tests.
    assert [_host_path(mounts, rule) for rule in config["rule_files"]] == [PROMETHEUS_DIR / "alerts.yml"]
    [job] = config["scrape_configs"]
    assert job["job_name"] == "patient-advocacy-agent"  # what the rules read (ReplicaDown)
    targets = [t for static in job["static_configs"] for t in static["targets"]]
    servers = re.findall(r"^\s*server\s+\S+\s+([a-z0-9-]+:\d+)", HAPROXY_CFG.read_text(), re.MULTILINE)
    assert sorted(targets) == sorted(set(servers)) == ["app-1:8000", "app-2:8000"]
    # The token the entrypoint writes is the file Prometheus sends, and the replicas' own token.
    token_file = job["authorization"]["credentials_file"]
    assert f"> {token_file}" in prometheus["command"][0]
    assert (
        prometheus["environment"]["MONITORING_TOKEN"] == services["app-1"]["environment"]["MONITORING_TOKEN"]
    )
    # The replicas read the fired alerts from this Prometheus (python -m web.alerts, /health/details).
    assert str(prometheus["ports"][0]).startswith("127.0.0.1:9090:9090")  # Prometheus's own port
    for name in ("app-1", "app-2"):
        assert services[name]["environment"]["ALERTS__PROMETHEUS_URL"] == "http://prometheus:9090"

    # promtool checks the config as Prometheus would load it, its container paths mapped here.
    local = tmp_path / "prometheus.yml"
    (tmp_path / "token").write_text(SECRETS["MONITORING_TOKEN"])
    job["authorization"]["credentials_file"] = str(tmp_path / "token")
    config["rule_files"] = [str(_host_path(mounts, rule)) for rule in config["rule_files"]]
    local.write_text(yaml.safe_dump(config))
    promtool = debian_tool("promtool", "prometheus (promtool)")
    result = subprocess.run(
        [promtool, "check", "config", str(local)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout and "rules found" in result.stdout


def test_grafana_is_provisioned_with_the_stacks_prometheus_and_the_dashboard(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]
    mounts = _mounts(grafana)
    provisioning = _host_path(mounts, "/etc/grafana/provisioning")
    assert provisioning == GRAFANA_DIR / "provisioning"
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"

    [source] = [
        source
        for path in sorted((provisioning / "datasources").glob("*.yml"))
        for source in yaml.safe_load(path.read_text())["datasources"]
    ]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in services  # the host name is the service's

    [provider] = [
        provider
        for path in sorted((provisioning / "dashboards").glob("*.yml"))
        for provider in yaml.safe_load(path.read_text())["providers"]
    ]
    assert provider["type"] == "file"
    dashboards = _host_path(mounts, provider["options"]["path"])
    assert dashboards == GRAFANA_DIR / "dashboards"
    loaded = {path.name for path in dashboards.glob("*.json")}
    assert "patient-advocacy-agent.json" in loaded  # the one tests/configs/test_dashboard.py checks
    # The dashboard's panels pick a Prometheus data source by variable: the provisioned one fits.
    for path in dashboards.glob("*.json"):
        variables = yaml.safe_load(path.read_text())["templating"]["list"]
        assert {"type": "datasource", "query": "prometheus"}.items() <= next(
            v for v in variables if v["name"] == "datasource"
        ).items()
