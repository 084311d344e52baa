#!/usr/bin/env bash
# Download SCIN (CSVs -> data/raw/scin/metadata.json, images -> data/raw/scin/images/).
# Resumable and safe to re-run. Each failure is one line on stderr with its fix and its own exit
# status (docs/runbook.md#download-failures).
# Usage: bash scripts/download_scin.sh [--skip-images] [--limit N] [--base-url URL]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  # The one failure Python cannot report: rag.download MESSAGES["no_python"] (a test compares them).
  echo "download_scin: no Python environment at .venv/bin/python: run bash scripts/setup.sh first (see docs/runbook.md#download-failures)" >&2
  exit 14
fi
exec .venv/bin/python -m rag.download "$@"
