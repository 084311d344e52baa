#!/usr/bin/env bash
# Set up (first run) and serve the agent. Usage: bash scripts/start_server.sh [development|staging|production]
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_NAME=${1:-development}
case "$ENV_NAME" in
  development|staging|production) ;;
  *) echo "usage: bash scripts/start_server.sh [development|staging|production]" >&2; exit 2 ;;
esac
bash scripts/setup.sh
export APP_ENV="$ENV_NAME"
# Fewer glibc malloc arenas: the sessions' many threads otherwise each fragment their own arena;
# measured by python -m tools.soak, it halves the memory a server keeps after sessions end.
export MALLOC_ARENA_MAX="${MALLOC_ARENA_MAX:-2}"
echo "[start] APP_ENV=$APP_ENV: serving on http://${HOST:-127.0.0.1}:${PORT:-8000} (Ctrl-C to stop)"
exec .venv/bin/python -m web
