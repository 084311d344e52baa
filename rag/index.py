"""Embed every labelled SCIN case into the vector store, in batches, skipping what is already there.

    python -m rag.index [--data DIR] [--db DIR] [--batch-size N] [--rebuild]

``DIR/metadata.json`` comes from the download (or ``python -m rag.scin convert``). Case text
goes through MiniLM into the text collection; images go through SigLIP into the image
collection when its weights are present locally, and are skipped (text-only index) otherwise.
Re-running adds only new cases and images. Cases without a dermatologist label are not indexed:
a similar case is only useful for its labels.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from configs.settings import ConfigError, hub_offline_environment, load_settings
from rag.cases import MetadataError, ScinCase, load_cases
from rag.image_encoder import ImageEncoder, image_model_problem, siglip_dir
from rag.store import CaseStore, StoreError
from rag.text import case_document
from rag.text_encoder import TextEncoder

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass
class IndexReport:
    cases: int = 0
    labelled: int = 0
    text_added: int = 0
    text_skipped: int = 0
    images_added: int = 0
    images_skipped: int = 0
    image_files_missing: int = 0
    image_files_unreadable: int = 0
    image_model: str = "ready"


def _batches(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def image_entry_id(case: ScinCase, image_path: str) -> str:
    return f"{case.case_id}/{Path(image_path).name}"


def index_text(
    cases: list[ScinCase],
    store: CaseStore,
    encoder: TextEncoder,
    report: IndexReport,
    *,
    batch_size: int = 64,
    progress: bool = True,
) -> None:
    collection = store.collection("text", encoder=encoder.name, dimension=encoder.dimension)
    done = store.ids("text")
    todo = [case for case in cases if case.case_id not in done]
    report.text_skipped += len(cases) - len(todo)
    with tqdm(total=len(todo), desc="text index", unit="case", disable=not progress) as bar:
        for batch in _batches(todo, batch_size):
            documents = [case_document(case) for case in batch]
            store.add(
                collection,
                [c.case_id for c in batch],
                encoder.encode(documents, batch_size=batch_size),
                [c.case_id for c in batch],
                [c.weighted_labels for c in batch],
                documents,
            )
            report.text_added += len(batch)
            bar.update(len(batch))


def index_images(
    cases: list[ScinCase],
    data_dir: Path,
    store: CaseStore,
    encoder: ImageEncoder,
    report: IndexReport,
    *,
    batch_size: int = 16,
    progress: bool = True,
) -> None:
    collection = store.collection("image", encoder=encoder.name, dimension=encoder.dimension)
    done = store.ids("image")
    todo = []
    for case in cases:
        for image in case.images:
            entry = image_entry_id(case, image.path)
            if entry in done:
                report.images_skipped += 1
            elif not (data_dir / image.path).is_file():
                report.image_files_missing += 1
            else:
                done.add(entry)  # a photo listed twice in a case is indexed once
                todo.append((entry, case, image.shot_type or "", data_dir / image.path))
    with tqdm(total=len(todo), desc="image index", unit="image", disable=not progress) as bar:
        for batch in _batches(todo, batch_size):
            loaded = []
            for entry in batch:
                try:
                    with Image.open(entry[3]) as image:
                        loaded.append((entry, image.convert("RGB")))
                except (UnidentifiedImageError, OSError):
                    report.image_files_unreadable += 1
            if loaded:
                vectors = encoder.encode([image for _, image in loaded])
                entries = [entry for entry, _ in loaded]
                store.add(
                    collection,
                    [e[0] for e in entries],
                    vectors,
                    [e[1].case_id for e in entries],
                    [e[1].weighted_labels for e in entries],
                    extra=[{"shot_type": e[2]} for e in entries],
                )
                report.images_added += len(loaded)
            bar.update(len(batch))


def build_index(
    cases: list[ScinCase],
    data_dir: Path,
    store: CaseStore,
    text_encoder: TextEncoder,
    image_encoder: ImageEncoder | None,
    *,
    image_problem: str | None = None,
    batch_size: int = 64,
    progress: bool = True,
) -> IndexReport:
    """Add the labelled cases (text, and images when an image encoder is given) that are not indexed yet."""
    labelled = [case for case in cases if case.labelled]
    report = IndexReport(cases=len(cases), labelled=len(labelled))
    index_text(labelled, store, text_encoder, report, batch_size=batch_size, progress=progress)
    if image_encoder is None:
        report.image_model = f"missing: {image_problem or 'no image encoder'}"
        return report
    index_images(
        labelled,
        data_dir,
        store,
        image_encoder,
        report,
        batch_size=max(1, batch_size // 4),
        progress=progress,
    )
    return report


def main(argv: list[str] | None = None) -> int:
    hub_offline_environment()
    parser = argparse.ArgumentParser(prog="python -m rag.index", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, help="directory with metadata.json and images/ (default: settings)"
    )
    parser.add_argument("--db", type=Path, help="vector store directory (default: settings)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rebuild", action="store_true", help="drop both collections first")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        data_dir = args.data or settings.path(settings.scin_dir)
        cases = load_cases(data_dir / "metadata.json")
        store = CaseStore(args.db or settings.path(settings.vector_store_dir))
        if args.rebuild:
            store.drop("text")
            store.drop("image")
        text_encoder = TextEncoder(
            settings.path(settings.embedding.text_model_dir), settings.embedding.device
        )
        model_dir = siglip_dir(settings)
        problem = image_model_problem(model_dir)
        image_encoder = None
        if problem is None:
            try:
                image_encoder = ImageEncoder(model_dir, settings.embedding.device)
            except Exception as exc:  # noqa: BLE001 - unusable weights: index the text, say why
                problem = f"{model_dir} did not load ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
        if problem:
            print(f"[index] images skipped, text only: {problem}", file=sys.stderr)
        report = build_index(
            cases,
            data_dir,
            store,
            text_encoder,
            image_encoder,
            image_problem=problem,
            batch_size=args.batch_size,
            progress=not args.no_progress,
        )
    except (ConfigError, MetadataError, StoreError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                "db": str(store.path),
                "text_entries": store.count("text"),
                "image_entries": store.count("image"),
                **asdict(report),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
