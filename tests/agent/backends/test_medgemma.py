"""The in-process MedGemma backend, on a tiny random-weight Gemma 3 saved and loaded like MedGemma."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import torch

from agent.backends import create_backend
from agent.backends.base import BrainRequest, CameraImage, Utterance
from agent.backends.medgemma import MedGemmaBackend, chat_messages
from agent.backends.prompt import build_prompt
from configs.settings import ConfigError, Settings, load_settings
from tests.agent.backends.support import jpeg


def local_settings(model_dir: Path | str, **llm: object) -> Settings:
    return load_settings(
        model_backend="local",
        llm={"medgemma_model_id": str(model_dir), "device": "cpu", "max_new_tokens": 24, **llm},
    )


def patient_turn(*images: CameraImage) -> BrainRequest:
    return BrainRequest(
        patient_text="There is a red patch on my arm and it itches.",
        history=[Utterance("agent", "Hello, what's bothering you about your skin today?")],
        images=list(images),
    )


async def collect(backend: MedGemmaBackend, request: BrainRequest) -> list[str]:
    return [piece async for piece in backend.reply(request)]


async def test_a_camera_frame_goes_through_the_processor_and_vision_model(tiny_medgemma_dir: Path) -> None:
    backend = create_backend(local_settings(tiny_medgemma_dir))
    assert isinstance(backend, MedGemmaBackend)
    seen: list[tuple[int, ...]] = []
    tower = backend.loaded.model.model.vision_tower
    hook = tower.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(tuple(kwargs["pixel_values"].shape)), with_kwargs=True
    )
    try:
        pieces = await collect(backend, patient_turn(jpeg(64, 48)))
    finally:
        hook.remove()
    assert seen == [(1, 3, 32, 32)]  # the JPEG, decoded and resized to the model's image size
    assert "".join(pieces).strip()
    assert backend.last_stats is not None and backend.last_stats.prompt_tokens > 4  # 4 image tokens + text


async def test_the_reply_streams_in_pieces_in_the_order_the_model_wrote_them(tiny_medgemma_dir: Path) -> None:
    backend = MedGemmaBackend(local_settings(tiny_medgemma_dir))
    request = patient_turn(jpeg())
    pieces = await collect(backend, request)
    assert len(pieces) >= 5 and all(pieces)
    assert backend.last_stats is not None and backend.last_stats.new_tokens == 24

    # The same greedy generation in one go, without the streamer, decodes to the same text.
    loaded = backend.loaded
    inputs = loaded.processor.apply_chat_template(
        chat_messages(build_prompt(request)), add_generation_prompt=True, tokenize=True, return_dict=True,
        return_tensors="pt",
    )  # fmt: skip
    with torch.inference_mode():
        out = loaded.model.generate(**inputs, max_new_tokens=24, do_sample=False)
    whole = loaded.processor.tokenizer.decode(
        out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    assert "".join(pieces) == whole


async def test_closing_the_stream_on_barge_in_stops_generation(tiny_medgemma_dir: Path) -> None:
    backend = MedGemmaBackend(local_settings(tiny_medgemma_dir, max_new_tokens=400))
    stream = backend.reply(patient_turn(jpeg()))
    first = [await anext(stream), await anext(stream)]
    await stream.aclose()
    stats = backend.last_stats
    assert stats is not None and all(first)
    assert await asyncio.to_thread(stats.done.wait, 30)
    assert stats.cancelled
    assert stats.new_tokens < 40  # stopped within a token or two of the close, not 400

    # The shared model is free again for the next turn.
    assert len(await collect(backend, patient_turn())) >= 5


async def test_a_broken_frame_raises_out_of_the_reply_instead_of_hanging(tiny_medgemma_dir: Path) -> None:
    backend = MedGemmaBackend(local_settings(tiny_medgemma_dir))
    broken = CameraImage(b"not a jpeg", 64, 48)
    with pytest.raises(Exception, match="cannot identify image"):
        await asyncio.wait_for(collect(backend, patient_turn(broken)), timeout=30)


def test_the_model_is_loaded_once_and_shared_by_sessions(tiny_medgemma_dir: Path) -> None:
    first = MedGemmaBackend(local_settings(tiny_medgemma_dir))
    second = MedGemmaBackend(local_settings(tiny_medgemma_dir))
    assert first is not second
    assert first.loaded is second.loaded
    assert "not a diagnosis" in first.greeting()


def test_warm_up_runs_once_per_model(tiny_medgemma_dir: Path) -> None:
    backend = MedGemmaBackend(local_settings(tiny_medgemma_dir, max_new_tokens=4))
    seconds = backend.warm_up()
    assert seconds > 0
    assert MedGemmaBackend(local_settings(tiny_medgemma_dir)).warm_up() == seconds


def test_a_model_id_resolves_under_models_dir(tiny_medgemma_dir: Path) -> None:
    settings = load_settings(
        model_backend="local", models_dir=tiny_medgemma_dir.parent,
        llm={"medgemma_model_id": f"google/{tiny_medgemma_dir.name}", "device": "cpu"},
    )  # fmt: skip
    assert MedGemmaBackend(settings).loaded.model is not None


def test_missing_weights_fail_at_start_up_with_the_fix(tmp_path: Path) -> None:
    settings = load_settings(model_backend="local", models_dir=tmp_path, llm={"device": "cpu"})
    with pytest.raises(ConfigError, match=r"medgemma-4b-it: run scripts/download_models.sh") as caught:
        create_backend(settings)
    assert "\n" not in str(caught.value)


def test_an_incomplete_download_is_a_config_error(tmp_path: Path, tiny_medgemma_dir: Path) -> None:
    (tmp_path / "config.json").write_text((tiny_medgemma_dir / "config.json").read_text())
    with pytest.raises(ConfigError, match="cannot load MedGemma"):
        MedGemmaBackend(local_settings(tmp_path))


def test_asking_for_cuda_without_a_gpu_fails_at_start_up(
    tiny_medgemma_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="LLM__DEVICE=cuda"):
        MedGemmaBackend(local_settings(tiny_medgemma_dir, device="cuda"))
    assert MedGemmaBackend(local_settings(tiny_medgemma_dir, device="auto")).loaded.device == "cpu"
