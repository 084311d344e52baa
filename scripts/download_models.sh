#!/usr/bin/env bash
# Download the models that do not ship on PyPI into models/ (needs network access to huggingface.co):
#   MedGemma 4B (google/medgemma-4b-it, gated: export HF_TOKEN and accept the licence on its page),
#   SigLIP (google/siglip-so400m-patch14-384), faster-whisper small, extra Piper voices.
# Idempotent: finished models are skipped, interrupted ones resume. Each failure is one line with its fix.
# Usage: bash scripts/download_models.sh [--only medgemma,siglip,whisper,piper] [--voices en_US-amy-medium,...]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  echo "[download] no .venv here: run bash scripts/setup.sh first" >&2
  exit 1
fi
exec .venv/bin/python -m agent.backends.download "$@"
