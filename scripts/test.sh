#!/usr/bin/env bash
# Set up everything the tests need (Python packages, Debian's chromium, sipp and redis-server, the
# models) and run the whole suite. CI (.ci/run) calls exactly this. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\033[1m[test]\033[0m %s\n' "$*"; }

bash scripts/setup.sh --test

need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v sipp >/dev/null 2>&1 || need+=(sip-tester)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)  # the shared store's Redis half
command -v turnserver >/dev/null 2>&1 || need+=(coturn)  # the TURN tests' relay (coturn)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)  # validates docker-compose.yml
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)  # checks configs/haproxy/haproxy.cfg
[ -x /usr/sbin/kamailio ] || command -v kamailio >/dev/null 2>&1 || need+=(kamailio)  # tests/media/test_kamailio.py
command -v promtool >/dev/null 2>&1 || need+=(prometheus)  # promtool tests configs/prometheus; the alerts end to end
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    say "installing Debian packages for the browser, phone and shared-state tests: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    say "missing ${need[*]}: install them (sudo apt-get install ${need[*]}) for the browser, phone and shared-state tests" >&2
    exit 1
  fi
fi

say "ruff"
.venv/bin/ruff check .
say "import layers (import-linter: tools > web > media > pipeline > rag > agent > configs)"
.venv/bin/lint-imports --no-cache
say "dependencies (deptry)"
.venv/bin/deptry .
say "dead code (vulture; reviewed exceptions in scripts/vulture_whitelist.py)"
.venv/bin/vulture
# The image a deployment runs (Dockerfile), built with Debian's podman on a locally made base and
# its /health and HEALTHCHECK checked: as root only (podman, debootstrap), minutes (about 3 GB of
# packages). SKIP_CONTAINER_CHECK=1 skips it on a workstation.
if [ "$(id -u)" = 0 ] && [ "${SKIP_CONTAINER_CHECK:-0}" != 1 ]; then
  say "the container image (scripts/container_check.sh)"
  PORT=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])') \
    bash scripts/container_check.sh
fi

say "pytest"
exec .venv/bin/python -m pytest "$@"
