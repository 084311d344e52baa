# The agent server on the embedded defaults (mock brain, offline models from PyPI packages).
# Build: docker build -t patient-advocacy-agent .   Run: docker run -p 8000:8000 patient-advocacy-agent
# The whole stack (replicas, Redis, HAProxy, coturn; phone and GPU profiles): docker-compose.yml,
# docs/runbook.md "Running with compose".
#
# Build arguments, each with the default that builds the real image:
#   BASE             the base image. A Debian bookworm image without Python also works (python3 and
#                    python3-venv are installed from Debian): scripts/container_check.sh builds
#                    on one made locally where no registry can be reached.
#   TORCH_INDEX_URL  where the CPU build of torch comes from (PyPI's torch is the CUDA build).
#   PIP_FIND_LINKS   optional: a folder of wheels (mounted into the build) pip may take them from.
#   PIP_CERT         optional: a CA bundle (mounted into the build) for a proxy that re-signs TLS.
# The two optional ones are read by pip from the environment during the build only: an ARG is not
# kept in the image's environment.
ARG BASE=python:3.11-slim-bookworm
FROM $BASE

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG PIP_FIND_LINKS
ARG PIP_CERT

ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 \
    APP_ENV=staging HOST=0.0.0.0 PORT=8000 MALLOC_ARENA_MAX=2
# The official Python image has python3; a plain Debian base gets Debian's 3.11.
RUN apt-get update && apt-get install -y --no-install-recommends libsndfile1 \
       $(command -v python3 >/dev/null || echo python3 python3-venv) \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml requirements.lock README.md ./
COPY agent agent
COPY pipeline pipeline
COPY media media
COPY rag rag
COPY web web
COPY configs configs
COPY scripts scripts
# torch first, CPU build, so that nothing pulls CUDA wheels. An optional argument left empty is
# unset, so that pip does not read an empty folder or certificate path.
RUN if [ -z "${PIP_FIND_LINKS:-}" ]; then unset PIP_FIND_LINKS; fi \
    && if [ -z "${PIP_CERT:-}" ]; then unset PIP_CERT; fi \
    && python3 -m venv .venv \
    && .venv/bin/pip install --no-cache-dir torch==2.13.0 --index-url "$TORCH_INDEX_URL" \
    && .venv/bin/pip install --no-cache-dir -r requirements.lock \
    && .venv/bin/pip install --no-cache-dir --no-deps -e . \
    && .venv/bin/python scripts/assemble_models.py --models /app/models
RUN useradd --create-home agent && mkdir -p /app/var /app/data && chown -R agent /app/var /app/data
USER agent
EXPOSE 8000
# The venv's Python: a Debian base has no `python` command. PORT is the server's own setting.
HEALTHCHECK CMD [".venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8000'), timeout=5)"]
CMD [".venv/bin/python", "-m", "web"]
