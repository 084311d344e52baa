# The agent server on the embedded defaults (mock brain, offline models from PyPI packages).
# Build: docker build -t patient-advocacy-agent .   Run: docker run -p 8000:8000 patient-advocacy-agent
FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 HF_HUB_OFFLINE=1 \
    APP_ENV=staging HOST=0.0.0.0 PORT=8000 MALLOC_ARENA_MAX=2
RUN apt-get update && apt-get install -y --no-install-recommends libsndfile1 \
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
# torch first, CPU build, so that nothing pulls CUDA wheels.
RUN python -m venv .venv \
    && .venv/bin/pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
    && .venv/bin/pip install --no-cache-dir -r requirements.lock \
    && .venv/bin/pip install --no-cache-dir --no-deps -e . \
    && .venv/bin/python scripts/assemble_models.py --models /app/models
RUN useradd --create-home agent && mkdir -p /app/var /app/data && chown -R agent /app/var /app/data
USER agent
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"
CMD [".venv/bin/python", "-m", "web"]
