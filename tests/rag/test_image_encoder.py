"""SigLIP loading and image embedding, through the product's from_pretrained path, on a tiny model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from configs.settings import load_settings
from rag.image_encoder import ImageEncoder, image_model_problem, siglip_dir
from tests.rag.conftest import jpeg_bytes, photo


def test_the_model_id_is_a_local_directory_or_a_name_under_models(tmp_path: Path, tiny_siglip: Path) -> None:
    assert siglip_dir(load_settings(embedding={"model_id": str(tiny_siglip)})) == tiny_siglip
    hub = load_settings(models_dir=tmp_path, embedding={"model_id": "google/siglip-so400m-patch14-384"})
    assert siglip_dir(hub) == tmp_path / "siglip-so400m-patch14-384"
    assert "no SigLIP weights" in image_model_problem(siglip_dir(hub))
    shutil.copytree(tiny_siglip, tmp_path / "siglip-so400m-patch14-384")
    assert image_model_problem(siglip_dir(hub)) is None


def test_an_incomplete_model_directory_is_named_not_loaded(tmp_path: Path, tiny_siglip: Path) -> None:
    broken = tmp_path / "siglip"
    shutil.copytree(tiny_siglip, broken)
    (broken / "preprocessor_config.json").unlink()
    assert "preprocessor_config.json" in image_model_problem(broken)
    shutil.copyfile(tiny_siglip / "preprocessor_config.json", broken / "preprocessor_config.json")
    (broken / "model.safetensors").unlink()
    assert "weights" in image_model_problem(broken)


def test_images_pass_through_the_processor_and_the_model(tiny_siglip: Path) -> None:
    from transformers import AutoImageProcessor, AutoModel

    encoder = ImageEncoder(tiny_siglip)
    images = [photo("a", size=80), photo("b", size=50).convert("L"), photo("c").convert("RGBA")]
    vectors = encoder.encode(images)
    assert vectors.shape == (3, 32) and vectors.dtype == np.float32 and encoder.dimension == 32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(vectors[0], vectors[1], atol=1e-3)
    # The same numbers as the processor (resize to 32x32, normalise) and the model computed by hand.
    processor, model = AutoImageProcessor.from_pretrained(tiny_siglip), AutoModel.from_pretrained(tiny_siglip)
    pixels = processor(images=[images[0].convert("RGB")], return_tensors="pt")["pixel_values"]
    assert tuple(pixels.shape) == (1, 3, 32, 32)
    with torch.inference_mode():
        expected = model.get_image_features(pixel_values=pixels).pooler_output[0].numpy()
    assert np.allclose(vectors[0], expected / np.linalg.norm(expected), atol=1e-5)


def test_a_camera_jpeg_lands_next_to_its_png_original(tiny_siglip: Path) -> None:
    encoder = ImageEncoder(tiny_siglip)
    originals = encoder.encode([photo("mole"), photo("rash"), photo("acne")])
    query = encoder.encode_bytes(jpeg_bytes("mole"))[0]
    distances = 1 - originals @ query
    assert int(np.argmin(distances)) == 0 and distances[0] < 0.01


def test_a_photo_that_is_not_an_image_raises_for_the_caller_to_handle(tiny_siglip: Path) -> None:
    with pytest.raises(OSError):  # PIL's UnidentifiedImageError; the Retriever turns it into no image hits
        ImageEncoder(tiny_siglip).encode_bytes(b"not a jpeg")
