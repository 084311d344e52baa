#!/usr/bin/env bash
# Download SCIN (CSVs -> data/raw/scin/metadata.json, images -> data/raw/scin/images/).
# Resumable and safe to re-run. Usage: bash scripts/download_scin.sh [--skip-images] [--limit N] [--base-url URL]
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m rag.download "$@"
