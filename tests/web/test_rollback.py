"""Rolling the model back (docs/runbook.md, "Rollback"): ``LLM__MEDGEMMA_MODEL_ID`` names the
weights, and a restart with the previous id serves the previous model.

Two tiny MedGemma-shaped models with different random weights are saved in two directories,
``medgemma-new`` and ``medgemma-old`` (the variable takes a directory, or a hub id whose files are
in ``models/``: ``tests/agent/backends/test_medgemma.py`` resolves that form). The server is built
from the environment twice, as each start of ``python -m web`` builds it (the composition root
reads the settings once, at start): first on ``medgemma-new``, then, the variable changed back,
on ``medgemma-old``. ``/health/details`` names the
directory the running model was loaded from, and the two starts run different weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from starlette.testclient import TestClient

from agent.backends.bench_gpu import save_synthetic_model
from agent.backends.medgemma import MedGemmaBackend
from tests.web.test_faults import server_settings
from web.app import create_app
from web.product import build_product


def start(tmp_path: Path) -> tuple[dict[str, Any], torch.Tensor]:
    """One start of the server from this environment: its /health/details and a weight it runs."""
    settings = server_settings(tmp_path)  # folders of the test; the model from the environment
    product = build_product(settings, phone=False)
    with TestClient(create_app(settings, product)) as client:
        details = client.get("/health/details").json()
    backend = product.first_backend
    assert isinstance(backend, MedGemmaBackend)
    return details, next(backend.loaded.model.parameters()).detach().clone()


@pytest.mark.slow
def test_a_restart_with_the_previous_model_id_serves_the_previous_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    save_synthetic_model(models / "medgemma-new", seed=1)
    save_synthetic_model(models / "medgemma-old", seed=2)
    monkeypatch.setenv("MODEL_BACKEND", "local")
    monkeypatch.setenv("LLM__DEVICE", "cpu")
    monkeypatch.setenv("LLM__MAX_NEW_TOKENS", "4")

    monkeypatch.setenv("LLM__MEDGEMMA_MODEL_ID", str(models / "medgemma-new"))
    before, new_weight = start(tmp_path / "first")
    monkeypatch.setenv("LLM__MEDGEMMA_MODEL_ID", str(models / "medgemma-old"))  # the rollback
    after, old_weight = start(tmp_path / "second")

    assert before["backend"] == after["backend"] == "local"
    assert before["model"] == str(models / "medgemma-new")
    assert after["model"] == str(models / "medgemma-old")
    assert not torch.equal(new_weight, old_weight)  # other weights, not only another name
