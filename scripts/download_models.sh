#!/usr/bin/env bash
# Download the models that do not ship on PyPI into models/ (needs network access to huggingface.co):
#   MedGemma 4B (google/medgemma-4b-it, gated: export HF_TOKEN and accept the licence on its page),
#   SigLIP (google/siglip-so400m-patch14-384), faster-whisper small, extra Piper voices.
# Idempotent: finished models are skipped, a rerun fetches only what is missing. Each failure is one
# line on stderr with its fix and its own exit status (docs/runbook.md#download-failures).
# Usage: bash scripts/download_models.sh [--only medgemma,siglip,whisper,piper] [--voices en_US-amy-medium,...]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  # The one failure Python cannot report: agent.backends.download MESSAGES["no_python"] (a test compares them).
  echo "download_models: no Python environment at .venv/bin/python: run bash scripts/setup.sh first (see docs/runbook.md#download-failures)" >&2
  exit 14
fi
exec .venv/bin/python -m agent.backends.download "$@"
