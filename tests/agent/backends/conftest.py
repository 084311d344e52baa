"""Fixtures for the model backends: a tiny MedGemma-shaped model on disk, and a fake model server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.agent.backends.support import FakeServer


@pytest.fixture(scope="session")
def tiny_medgemma_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Gemma 3 vision-language model with random weights, saved like MedGemma (once per run)."""
    from agent.backends.bench_gpu import save_synthetic_model

    return save_synthetic_model(tmp_path_factory.mktemp("medgemma-tiny"))


@pytest.fixture(scope="session")
def redaction_ready() -> None:
    """Build Presidio's engines once (seconds), not inside a test's timeout."""
    from agent.pii import warm_up

    warm_up()


@pytest.fixture
async def fake_server() -> AsyncIterator[FakeServer]:
    server = FakeServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield server
    server.release.set()
    await runner.cleanup()
