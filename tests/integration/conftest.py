"""The local models the integration test runs: the real weights in ``models/`` when they are there,
tiny random-weight models of the same architectures (built here, seconds on a CPU) when not.

Where the weights are looked for is the settings' business (``LLM__MEDGEMMA_MODEL_ID``,
``EMBEDDING__MODEL_ID``, ``MODELS_DIR``, ``VOICE__WHISPER_MODEL_SIZE``), read through
``load_settings()`` exactly as the server reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.backends.medgemma import resolve_model_dir
from configs.settings import ConfigError, Settings, load_settings
from pipeline.session import whisper_dir
from rag.image_encoder import image_model_problem, siglip_dir


@dataclass(frozen=True)
class LocalModels:
    """The weights a run uses, and whether each is the real model or a tiny stand-in."""

    medgemma: Path
    medgemma_is_real: bool
    siglip: Path
    siglip_is_real: bool
    whisper: Path


def _tiny_siglip(target: Path) -> Path:
    """A SigLIP with random weights and tiny towers, saved like a real checkpoint (the image side
    is what retrieval loads; no tokenizer, as the product needs none)."""
    import torch
    from transformers import SiglipConfig, SiglipModel
    from transformers.models.siglip import SiglipImageProcessorPil

    torch.manual_seed(0)
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    text = {
        "vocab_size": 64,
        "max_position_embeddings": 16,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 1,
    }
    config = SiglipConfig(
        text_config={**tower, **text}, vision_config={**tower, "image_size": 32, "patch_size": 8}
    )
    SiglipModel(config).eval().save_pretrained(target)
    SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(target)
    return target


@pytest.fixture(scope="session")
def configured() -> Settings:
    """The settings of this shell (``MODEL_BACKEND=local ...`` as the runbook sets them)."""
    return load_settings()


@pytest.fixture(scope="session")
def local_models(configured: Settings, tmp_path_factory: pytest.TempPathFactory) -> LocalModels:
    from agent.backends.bench_gpu import save_synthetic_model

    try:
        medgemma, medgemma_is_real = resolve_model_dir(configured), True
    except ConfigError:
        medgemma, medgemma_is_real = save_synthetic_model(tmp_path_factory.mktemp("medgemma-tiny")), False
    siglip = siglip_dir(configured)
    siglip_is_real = image_model_problem(siglip) is None
    if not siglip_is_real:
        siglip = _tiny_siglip(tmp_path_factory.mktemp("models") / "siglip-tiny")
    whisper = whisper_dir(configured)
    if not (whisper / "model.bin").is_file():
        pytest.fail(
            f"no Whisper weights in {whisper}: run scripts/setup.sh (it assembles models/whisper-base)"
        )
    return LocalModels(medgemma, medgemma_is_real, siglip, siglip_is_real, whisper)
