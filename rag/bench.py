"""Retrieval benchmark on synthetic SCIN-format cases.

    python -m rag.bench --cases 10000 [--queries 200] [--k 10] [--keep DIR] --json

Writes synthetic CSVs, converts them (``rag.scin``), builds the text index with MiniLM
(``rag.index``), fills the image collection with random unit vectors, then times queries:
a text query is what the pipeline runs (query text from clinical facts, MiniLM encoding,
ChromaDB search, merge); an image query is the ChromaDB search of the image collection, plus
the SigLIP encoding of a photo only when SigLIP weights are present (the JSON says which).
Reports p50/p95 latencies, index build rates and the size on disk.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from agent.facts import ClinicalFacts, Presence, findings_catalogue
from configs.settings import Settings, hub_offline_environment, load_settings
from rag.cases import load_cases
from rag.image_encoder import ImageEncoder, image_model_problem, siglip_dir
from rag.index import IndexReport, image_entry_id, index_text
from rag.retrieval import Retriever
from rag.scin import convert
from rag.store import CaseStore
from rag.synthetic import DURATIONS, write_synthetic_csvs
from rag.text import BODY_PART_WORDS, query_from_facts
from rag.text_encoder import TextEncoder

TARGET_TEXT_P95_MS = 50.0


def _stats(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1000
    return {
        "p50": round(float(np.percentile(ms, 50)), 2),
        "p95": round(float(np.percentile(ms, 95)), 2),
        "mean": round(float(ms.mean()), 2),
        "max": round(float(ms.max()), 2),
    }


def random_facts(rng: random.Random) -> ClinicalFacts:
    """A plausible conversation state: a lesion, some symptoms, a site, a duration, a skin type."""
    catalogue = list(findings_catalogue().values())
    facts = ClinicalFacts()
    for category, count in (
        ("lesion", 1),
        ("symptom", rng.randint(0, 2)),
        ("change", rng.randint(0, 2)),
        ("systemic", rng.choice((0, 0, 0, 1))),
    ):
        for finding in rng.sample([f for f in catalogue if f.category == category], k=count):
            facts.record(finding.id, Presence.PRESENT)
    facts.body_sites = rng.sample(list(BODY_PART_WORDS), k=rng.randint(0, 2))
    facts.duration = rng.choice((None, *DURATIONS[:-1]))
    facts.skin_type = rng.choice((None, "FST1", "FST2", "FST3", "FST4", "FST5", "FST6"))
    return facts


def _photo(rng: random.Random) -> bytes:
    pixels = np.asarray([[rng.randrange(256) for _ in range(3)]], dtype=np.uint8) * np.ones(
        (384, 384, 1), np.uint8
    )
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG")
    return out.getvalue()


def _image_vectors(
    store: CaseStore, cases: list[Any], dimension: int, encoder: str, batch: int = 2048
) -> int:
    rng = np.random.default_rng(0)
    collection = store.collection("image", encoder=encoder, dimension=dimension)
    entries = [(image_entry_id(case, image.path), case) for case in cases for image in case.images]
    for start in range(0, len(entries), batch):
        chunk = entries[start : start + batch]
        vectors = rng.standard_normal((len(chunk), dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        store.add(
            collection,
            [e[0] for e in chunk],
            vectors,
            [e[1].case_id for e in chunk],
            [e[1].weighted_labels for e in chunk],
        )
    return len(entries)


def run_bench(
    n_cases: int, *, queries: int = 200, k: int = 10, work_dir: Path, settings: Settings | None = None
) -> dict[str, Any]:
    """Build the synthetic index in ``work_dir`` and time it; returns the JSON report."""
    settings = settings or load_settings()
    rng = random.Random(1)
    started = time.perf_counter()
    write_synthetic_csvs(work_dir / "csv", n_cases)
    converted = convert(work_dir / "csv", work_dir / "scin")
    convert_s = time.perf_counter() - started
    cases = [case for case in load_cases(work_dir / "scin") if case.labelled]

    started = time.perf_counter()
    text_encoder = TextEncoder(settings.path(settings.embedding.text_model_dir), settings.embedding.device)
    load_s = time.perf_counter() - started
    store = CaseStore(work_dir / "db")
    started = time.perf_counter()
    index_text(cases, store, text_encoder, IndexReport(), progress=False)
    text_s = time.perf_counter() - started

    model_dir = siglip_dir(settings)
    problem = image_model_problem(model_dir)
    image_encoder = None if problem else ImageEncoder(model_dir, settings.embedding.device)
    dimension = image_encoder.dimension if image_encoder else settings.embedding_dimension
    started = time.perf_counter()
    n_vectors = _image_vectors(store, cases, dimension, "random-unit-vectors")
    image_s = time.perf_counter() - started

    retriever = Retriever(load_settings(vector_store_dir=work_dir / "db"), k=k)
    texts = [query_from_facts(random_facts(rng)) for _ in range(queries + 5)]
    photos = [_photo(rng) for _ in range(min(queries, 20))] if image_encoder else []
    text_times, image_times = [], []
    for i, text in enumerate(texts):
        started = time.perf_counter()
        found = retriever.search(text, k=k)
        if i >= 5:  # the first queries warm the model up
            text_times.append(time.perf_counter() - started)
        if not found:
            raise RuntimeError("the text index returned nothing")
    vectors = np.random.default_rng(2).standard_normal((queries + 5, dimension)).astype(np.float32)
    for i in range(queries + 5):
        started = time.perf_counter()
        vector = image_encoder.encode_bytes(photos[i % len(photos)])[0] if image_encoder else vectors[i]
        store.query("image", vector, k * 3)
        if i >= 5:
            image_times.append(time.perf_counter() - started)

    text_stats = _stats(text_times)
    import torch

    return {
        "cases": n_cases,
        "labelled_cases": len(cases),
        "image_vectors": n_vectors,
        "queries": queries,
        "k": k,
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
        },
        "convert_s": round(convert_s, 2),
        "convert_cases": converted.cases,
        "text_model_load_s": round(load_s, 2),
        "index_build": {
            "text_s": round(text_s, 2),
            "text_cases_per_s": round(len(cases) / text_s, 1),
            "image_s": round(image_s, 2),
            "image_vectors_per_s": round(n_vectors / image_s, 1),
            "image_vectors_per_s_excludes_encoder": True,
        },
        "text_query_ms": text_stats,
        "text_query_includes_encoder": True,
        "text_target_p95_ms": TARGET_TEXT_P95_MS,
        "text_p95_within_target": text_stats["p95"] <= TARGET_TEXT_P95_MS,
        "image_query_ms": _stats(image_times),
        "image_query_includes_encoder": image_encoder is not None,
        "image_vectors_source": (
            f"random unit vectors ({dimension}-d); query time includes SigLIP ({model_dir.name})"
            if image_encoder
            else f"random unit vectors ({dimension}-d): the image query time excludes the image encoder "
            f"(SigLIP weights missing: {problem})"
        ),
        "disk_mb": round(store.size_bytes() / 2**20, 1),
    }


def main(argv: list[str] | None = None) -> int:
    hub_offline_environment()
    parser = argparse.ArgumentParser(prog="python -m rag.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument(
        "--keep", type=Path, help="build in this directory and keep it (default: a temporary one)"
    )
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    args = parser.parse_args(argv)
    work_dir = args.keep or Path(tempfile.mkdtemp(prefix="rag-bench-"))
    try:
        report = run_bench(args.cases, queries=args.queries, k=args.k, work_dir=work_dir)
    finally:
        if args.keep is None:
            shutil.rmtree(work_dir, ignore_errors=True)
    if not args.json:
        print(
            f"text query p50 {report['text_query_ms']['p50']} ms, p95 {report['text_query_ms']['p95']} ms; "
            f"image query p95 {report['image_query_ms']['p95']} ms; "
            f"{report['index_build']['text_cases_per_s']} cases/s; {report['disk_mb']} MB",
            file=sys.stderr,
        )
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
