#!/usr/bin/env bash
# Embed data/raw/scin/metadata.json into the vector store (data/chroma). Incremental: re-runs add only new cases.
# Usage: bash scripts/index_embeddings.sh [--data DIR] [--db DIR] [--rebuild]
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m rag.index "$@"
