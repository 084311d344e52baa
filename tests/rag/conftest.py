"""Fixtures for the retrieval tests: SCIN fixture data, photos, MiniLM, a tiny SigLIP, an index."""

from __future__ import annotations

import hashlib
import io
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from configs.settings import Settings, load_settings
from rag.cases import ScinCase, load_cases
from rag.scin import convert

FIXTURES = Path(__file__).parent / "fixtures"
# Case ids of the fixture (see fixtures/make_fixtures.py).
ECZEMA, MOLE, BCC, TINEA, UNLABELLED = (
    "-1000600354148496558",
    "-1002039107727665188",
    "-1003294125889094016",
    "-1009085213289004093",
    "-1011228839398232124",
)
URTICARIA, PSORIASIS, NO_LABEL_ROW, BAD_LABEL_CELL = (
    "-1014337398361046361",
    "-1016383637475613425",
    "-1020000000000000001",
    "-1030000000000000002",
)
LABELLED = {ECZEMA, MOLE, BCC, TINEA, URTICARIA, PSORIASIS}


def photo(name: str, size: int = 48) -> Image.Image:
    """A distinct synthetic "skin photo" per name: a colour and a stripe pattern from its hash."""
    digest = hashlib.sha256(name.encode()).digest()
    base = np.array(list(digest[:3]), dtype=np.uint8)
    image = np.ones((size, size, 3), dtype=np.uint8) * base
    period = 2 + digest[3] % 6
    image[:, ::period] = np.array(list(digest[4:7]), dtype=np.uint8)
    return Image.fromarray(image)


def png_bytes(name: str) -> bytes:
    out = io.BytesIO()
    photo(name).save(out, format="PNG")
    return out.getvalue()


def jpeg_bytes(name: str) -> bytes:
    out = io.BytesIO()
    photo(name).save(out, format="JPEG", quality=95)
    return out.getvalue()


@pytest.fixture
def csv_dir(tmp_path: Path) -> Path:
    """A copy of the fixture CSVs (tests may damage it)."""
    target = tmp_path / "csv"
    target.mkdir()
    for name in ("scin_cases.csv", "scin_labels.csv"):
        shutil.copyfile(FIXTURES / name, target / name)
    return target


def write_photos(data_dir: Path, cases: list[ScinCase]) -> None:
    for case in cases:
        for image in case.images:
            path = data_dir / image.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(png_bytes(Path(image.path).stem))


@pytest.fixture
def scin_dir(tmp_path: Path, csv_dir: Path) -> Path:
    """Converted fixture: ``metadata.json`` and every photo under ``images/``."""
    target = tmp_path / "scin"
    convert(csv_dir, target)
    write_photos(target, load_cases(target / "metadata.json"))
    return target


@pytest.fixture(scope="session")
def text_encoder():
    from rag.text_encoder import TextEncoder

    settings = load_settings()
    return TextEncoder(settings.path(settings.embedding.text_model_dir))


@pytest.fixture(scope="session")
def tiny_siglip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SigLIP with random weights and tiny towers, saved like a real checkpoint.

    The image side is what retrieval uses: the directory holds config.json, the safetensors
    weights and the image processor's preprocessor_config.json (no tokenizer: SigLIP's needs
    sentencepiece, which the product does not need either).
    """
    import torch
    from transformers import SiglipConfig, SiglipModel
    from transformers.models.siglip import SiglipImageProcessorPil

    torch.manual_seed(0)
    tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    config = SiglipConfig(
        text_config={
            **tower,
            "vocab_size": 64,
            "max_position_embeddings": 16,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 1,
        },
        vision_config={**tower, "image_size": 32, "patch_size": 8},
    )
    target = tmp_path_factory.mktemp("models") / "siglip-tiny"
    SiglipModel(config).eval().save_pretrained(target)
    SiglipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(target)
    return target


@dataclass
class BuiltIndex:
    data: Path
    db: Path
    settings: Settings


@pytest.fixture
def built_index(tmp_path: Path, scin_dir: Path, text_encoder, tiny_siglip: Path) -> BuiltIndex:
    """The fixture indexed with MiniLM (text) and the tiny SigLIP (images)."""
    from rag.image_encoder import ImageEncoder
    from rag.index import build_index
    from rag.store import CaseStore

    db = tmp_path / "db"
    build_index(
        load_cases(scin_dir), scin_dir, CaseStore(db), text_encoder, ImageEncoder(tiny_siglip), progress=False
    )
    settings = load_settings(vector_store_dir=db, scin_dir=scin_dir, embedding={"model_id": str(tiny_siglip)})
    return BuiltIndex(scin_dir, db, settings)
