"""Image embeddings with SigLIP, from local weights only (never downloaded).

``settings.embedding.model_id`` is either a local directory, or a hub id whose weights were put
in ``models/<last part of the id>`` (``models/siglip-so400m-patch14-384``). The model is loaded
with transformers' ``AutoModel`` and its image processor with ``AutoImageProcessor``: the image
tower is all retrieval needs, so no tokenizer is required.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from configs.settings import Settings

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def siglip_dir(settings: Settings) -> Path:
    """Where the SigLIP weights are expected."""
    model_id = settings.embedding.model_id.strip()
    as_path = Path(model_id).expanduser()
    if as_path.is_absolute() or model_id.startswith((".", "~")) or settings.path(as_path).is_dir():
        return settings.path(as_path)
    return settings.path(settings.models_dir) / model_id.rstrip("/").split("/")[-1]


def image_model_problem(model_dir: Path) -> str | None:
    """Why the SigLIP directory cannot be used, or None when it can."""
    if not model_dir.is_dir():
        return f"no SigLIP weights in {model_dir} (put them there, or set EMBEDDING__MODEL_ID to a local dir)"
    for needed in ("config.json", "preprocessor_config.json"):
        if not (model_dir / needed).exists():
            return f"{model_dir} has no {needed}"
    if not any((model_dir / name).exists() for name in WEIGHT_FILES):
        return f"{model_dir} has no weights file ({WEIGHT_FILES[0]})"
    return None


def _device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class ImageEncoder:
    """SigLIP image features, L2-normalised (cosine distance = 1 - dot product)."""

    def __init__(self, model_dir: Path, device: str = "cpu") -> None:
        problem = image_model_problem(model_dir)
        if problem:
            raise FileNotFoundError(problem)
        from transformers import AutoImageProcessor, AutoModel

        self.name = model_dir.name
        self._device = _device(device)
        self._processor: Any = AutoImageProcessor.from_pretrained(str(model_dir), local_files_only=True)
        self._model: Any = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
        self._model.to(self._device).eval()
        config = self._model.config
        self.dimension = int(getattr(config, "vision_config", config).hidden_size)

    def encode(self, images: list[Image.Image]) -> np.ndarray:
        """One row per image, float32."""
        import torch

        inputs = self._processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        with torch.inference_mode():
            output = self._model.get_image_features(pixel_values=inputs["pixel_values"].to(self._device))
        features = output if torch.is_tensor(output) else output.pooler_output
        vectors = features.float().cpu().numpy()
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)

    def encode_bytes(self, data: bytes) -> np.ndarray:
        """An encoded photo (JPEG, PNG ...) as one row."""
        with Image.open(io.BytesIO(data)) as image:
            return self.encode([image.convert("RGB")])

