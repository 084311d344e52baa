"""GPU benchmark of the in-process MedGemma path on a MedGemma-4B-shaped model with random weights.

``python -m agent.backends.bench_gpu --json`` builds ``Gemma3ForConditionalGeneration`` from a
MedGemma 4B configuration (text: hidden 2560, 34 layers, 8 heads / 4 KV heads, head dim 256,
sliding window 1024; SigLIP: hidden 1152, 27 layers, 896 px, patch 14; 256 tokens per image)
with random weights (no download: the compute is the real model's, the words are noise), and
runs replies through ``MedGemmaBackend``: the same prompt, processor, streamer, static cache and
warm-up as a session. It reports the warm-up (compilation) time, and per reply with one camera
frame the time to the first token (and to the first streamed text), to the first sentence (15
tokens, a typical spoken first sentence: random weights never end one), and the decode speed.

``--tiny`` builds a tiny model of the same architecture that runs on a CPU in seconds. The tests
use ``save_synthetic_model`` to put such a model and its processor in a directory.

The tokenizer is synthetic too: Gemma's special tokens at Gemma's ids, byte fallback, and one
token per word of the prompt's vocabulary, so prompts have about the real token count.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3Processor, GemmaTokenizer
from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

from agent.backends import prompt as prompt_module
from agent.backends.base import BrainRequest, CameraImage, Utterance
from agent.backends.medgemma import MedGemmaBackend, ReplyStats, register_model, resolve_device
from configs.settings import hub_offline_environment, load_settings

FIRST_SENTENCE_TOKENS = 15
SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
TURN, END_TURN = "<start_of_turn>", "<end_of_turn>"
BOI, EOI, IMAGE = "<start_of_image>", "<end_of_image>", "<image_soft_token>"

# Gemma 3's chat template (google/gemma-3-4b-it, as MedGemma ships it), image parts included.
CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

BENCH_PATIENT = (
    "I have a mole on my upper back that my partner says has been getting bigger over the last two "
    "months. It sometimes itches and once it bled a little after I scratched it."
)
BENCH_HISTORY = [
    Utterance("agent", "Hello, I'm the skin check-in assistant. What's bothering you about your skin today?"),
    Utterance("patient", "I'm worried about a mole on my back."),
    Utterance("agent", "I'm sorry to hear that. How long have you noticed it, and has it changed?"),
]


@dataclass(frozen=True)
class Shape:
    """A Gemma 3 multimodal architecture: sizes only."""

    name: str
    text: dict[str, Any]
    vision: dict[str, Any]
    tokens_per_image: int
    vocab_size: int | None  # None: just the synthetic vocabulary
    special_ids: dict[str, int] | None  # Gemma's ids for the special tokens, or None: packed first


MEDGEMMA_4B = Shape(
    name="medgemma-4b-it shape",
    text={
        "hidden_size": 2560, "intermediate_size": 10240, "num_hidden_layers": 34, "num_attention_heads": 8,
        "num_key_value_heads": 4, "head_dim": 256, "query_pre_attn_scalar": 256, "sliding_window": 1024,
        "rope_scaling": {"rope_type": "linear", "factor": 8.0}, "rope_theta": 1_000_000.0,
        "rope_local_base_freq": 10_000.0, "max_position_embeddings": 131_072,
    },
    vision={
        "hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16,
        "image_size": 896, "patch_size": 14, "vision_use_head": False, "layer_norm_eps": 1e-6,
    },
    tokens_per_image=256,
    vocab_size=262_208,
    special_ids={
        "<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, TURN: 105, END_TURN: 106,
        BOI: 255_999, EOI: 256_000, IMAGE: 262_144,
    },
)  # fmt: skip
TINY = Shape(
    name="tiny gemma3 (tests)",
    text={
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
        "num_key_value_heads": 1, "head_dim": 32, "query_pre_attn_scalar": 32, "sliding_window": 16,
        "layer_types": ["sliding_attention", "full_attention"], "max_position_embeddings": 8192,
    },
    vision={
        "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
        "image_size": 32, "patch_size": 8, "vision_use_head": False, "layer_norm_eps": 1e-6,
    },
    tokens_per_image=4,  # 4 x 4 patches pooled to 2 x 2
    vocab_size=None,
    special_ids=None,
)  # fmt: skip


# --- a synthetic model directory ------------------------------------------------------------


def prompt_words() -> list[str]:
    """The words the agent's prompts are made of (the synthetic vocabulary)."""
    texts = [value for value in vars(prompt_module).values() if isinstance(value, str)]
    texts += list(prompt_module.LEVEL_MEANS.values()) + [BENCH_PATIENT] + [u.text for u in BENCH_HISTORY]
    texts.append(prompt_module.greeting("911"))
    return sorted({word for text in texts for word in re.findall(r"[A-Za-z']+", text)})


def synthetic_tokenizer(shape: Shape, words: list[str]) -> GemmaTokenizer:
    """A Gemma tokenizer: Gemma's specials, byte fallback, ASCII, and one token per word (with merges)."""
    specials = [*SPECIALS, TURN, END_TURN, BOI, EOI]
    fixed = shape.special_ids or {token: i for i, token in enumerate(specials)}
    pieces = [f"<0x{b:02X}>" for b in range(256)] + ["▁"] + [chr(c) for c in range(33, 127)]
    known, merges = set(pieces), []
    for word in words:
        for spelled in (f"▁{word}", word):
            for end in range(2, len(spelled) + 1):
                if spelled[:end] not in known:
                    known.add(spelled[:end])
                    pieces.append(spelled[:end])
                    merges.append((spelled[: end - 1], spelled[end - 1]))
    if shape.special_ids is None:
        fixed = {**fixed, IMAGE: len(specials) + len(pieces)}  # last, as in Gemma's vocabulary
    size = max(shape.vocab_size or 0, max(fixed.values()) + 1, len(fixed) + len(pieces))
    by_id: dict[int, str] = {i: token for token, i in fixed.items()}
    fill = iter(pieces + [f"▁w{n}" for n in range(size)])
    vocab = {by_id.get(i) or next(fill): i for i in range(size)}
    return GemmaTokenizer(
        vocab=vocab, merges=merges, boi_token=BOI, eoi_token=EOI, image_token=IMAGE,
        extra_special_tokens=[TURN, END_TURN, BOI, EOI, IMAGE],
    )  # fmt: skip


def synthetic_processor(shape: Shape, words: list[str] | None = None) -> Gemma3Processor:
    tokenizer = synthetic_tokenizer(shape, words if words is not None else prompt_words())
    side = shape.vision["image_size"]
    images = Gemma3ImageProcessorPil(
        size={"height": side, "width": side}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    )
    return Gemma3Processor(
        image_processor=images, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE,
        image_seq_length=shape.tokens_per_image,
    )  # fmt: skip


def synthetic_model(shape: Shape, tokenizer: Any, *, device: str = "cpu", dtype: Any = None,
                    seed: int = 0) -> Gemma3ForConditionalGeneration:  # fmt: skip
    """Random weights of ``shape`` on ``device``; it never emits end-of-turn, so replies run to length."""
    config = Gemma3Config(
        text_config={**shape.text, "vocab_size": len(tokenizer)},
        vision_config={"model_type": "siglip_vision_model", **shape.vision},
        mm_tokens_per_image=shape.tokens_per_image,
        boi_token_index=tokenizer.boi_token_id,
        eoi_token_index=tokenizer.eoi_token_id,
        image_token_index=tokenizer.image_token_id,
    )
    torch.manual_seed(seed)
    with torch.device(device):
        model = Gemma3ForConditionalGeneration._from_config(config, dtype=dtype or torch.float32)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def save_synthetic_model(path: Path, shape: Shape = TINY, *, seed: int = 0) -> Path:
    """A model directory like MedGemma's (config, weights, processor, chat template), random weights."""
    processor = synthetic_processor(shape)
    synthetic_model(shape, processor.tokenizer, seed=seed).save_pretrained(path)
    processor.save_pretrained(path)
    return path


# --- the benchmark ------------------------------------------------------------------------


def camera_frame(width: int = 640, height: int = 480) -> CameraImage:
    image = Image.new("RGB", (width, height), (186, 132, 118))
    for x in range(width // 3, width // 2):  # a darker patch: not a flat image
        for y in range(height // 3, height // 2):
            image.putpixel((x, y), (96, 60, 52))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return CameraImage(out.getvalue(), width, height)


def bench_request() -> BrainRequest:
    return BrainRequest(patient_text=BENCH_PATIENT, history=list(BENCH_HISTORY), images=[camera_frame()])


async def one_reply(backend: MedGemmaBackend, request: BrainRequest) -> dict[str, Any]:
    """One reply through the backend, timed from the ``reply()`` call (tokens: by its stopping criterion)."""
    started = time.perf_counter()
    first_text: float | None = None
    async for piece in backend.reply(request):
        if first_text is None and piece.strip():
            first_text = time.perf_counter()
    finished = time.perf_counter()
    stats: ReplyStats = backend.last_stats  # type: ignore[assignment]
    times = stats.token_times or [finished]
    return {
        "prompt_tokens": stats.prompt_tokens,
        "new_tokens": stats.new_tokens,
        "ttft_s": round(times[0] - started, 4),
        # Random weights may emit tokens that decode to nothing (specials): then there is no first text.
        "first_text_s": round(first_text - started, 4) if first_text is not None else None,
        "first_sentence_s": round(times[min(FIRST_SENTENCE_TOKENS, len(times)) - 1] - started, 4),
        "tokens_per_s": round(stats.tokens_per_s, 1),
        "total_s": round(finished - started, 4),
    }


async def run(
    shape: Shape, *, device: str, runs: int, max_new_tokens: int, dtype: Any = None
) -> dict[str, Any]:
    dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        processor = synthetic_processor(shape)
        processor.save_pretrained(tmp)
        model = synthetic_model(shape, processor.tokenizer, device=device, dtype=dtype)
        model.config.save_pretrained(tmp)  # the directory looks like a model's; the weights stay in memory
        build_s = time.perf_counter() - started
        register_model(Path(tmp), model, device, static_cache=True)
        settings = load_settings(
            model_backend="local",
            llm={"medgemma_model_id": tmp, "device": device, "max_new_tokens": max_new_tokens},
        )
        backend = MedGemmaBackend(settings)
        warm_up_s = await asyncio.to_thread(backend.warm_up)
        results = [await one_reply(backend, bench_request()) for _ in range(runs)]
    keys = ("ttft_s", "first_sentence_s", "tokens_per_s")
    median = {key: statistics.median(result[key] for result in results) for key in keys}
    return {
        "model": shape.name + ", random weights",
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "static_cache": True,
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "build_s": round(build_s, 2),
        "warm_up_s": round(warm_up_s, 2),
        "image_tokens": shape.tokens_per_image,
        "first_sentence_tokens": FIRST_SENTENCE_TOKENS,
        "median": median,
        "runs": results,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model on the CPU (seconds; for tests)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--device", default=None, help="cuda | cpu | auto (default: auto; cpu with --tiny)")
    parser.add_argument(
        "--dtype",
        choices=["bfloat16", "float32"],
        default=None,
        help="default: bfloat16 on a GPU, float32 on a CPU (as the backend loads MedGemma)",
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args(argv)
    hub_offline_environment()
    device = resolve_device(args.device or ("cpu" if args.tiny else "auto"))
    if not args.tiny and device == "cpu":
        print("warning: the full-size model on a CPU takes minutes per reply; use --tiny or a GPU",
              file=sys.stderr)  # fmt: skip
    shape = TINY if args.tiny else MEDGEMMA_4B
    dtype = getattr(torch, args.dtype) if args.dtype else None
    result = asyncio.run(
        run(shape, device=device, runs=args.runs, max_new_tokens=args.max_new_tokens, dtype=dtype)
    )
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        r, m = result, result["median"]
        print(f"{r['model']} on {r['device']} ({r['dtype']}): warm-up {r['warm_up_s']} s; "
              f"median first text {m['ttft_s']} s, first sentence {m['first_sentence_s']} s, "
              f"{m['tokens_per_s']} tokens/s")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
