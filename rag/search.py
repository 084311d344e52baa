"""Search the SCIN index from the command line.

    python -m rag.search "itchy red rash on the arm" [--image PHOTO] [--k 10] [--db DIR] [--json]

Prints the nearest labelled cases: case id, weighted labels, distance, and which index matched
("text" or "image"). Exits 1 with a one-line reason when there is no index.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from configs.settings import ConfigError, hub_offline_environment, load_settings
from rag.malignancy import malignant_share
from rag.retrieval import Retriever


def main(argv: list[str] | None = None) -> int:
    hub_offline_environment()
    parser = argparse.ArgumentParser(prog="python -m rag.search", description=__doc__.splitlines()[0])
    parser.add_argument("text", help="what the patient describes (may be empty with --image)")
    parser.add_argument("--image", type=Path, help="a photo of the skin")
    parser.add_argument("--k", type=int, default=None, help="how many cases (default: VECTOR_STORE_TOP_K)")
    parser.add_argument("--db", type=Path, help="vector store directory (default: settings)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(**({"vector_store_dir": args.db} if args.db else {}))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.image is not None and not args.image.is_file():
        print(f"error: {args.image}: no such file", file=sys.stderr)
        return 2
    retriever = Retriever.from_settings(settings)
    status = retriever.status()
    if status["index"] != "ready":
        print(
            f"error: no index at {settings.path(settings.vector_store_dir)}: "
            "run `bash scripts/index_embeddings.sh`",
            file=sys.stderr,
        )
        return 1
    image = args.image.read_bytes() if args.image else None
    cases = retriever.search(args.text, image_jpeg=image, k=args.k)
    if args.json:
        print(
            json.dumps(
                {
                    "query": args.text,
                    "image": str(args.image) if args.image else None,
                    "cases": [asdict(case) for case in cases],
                    "malignant_share": round(malignant_share(cases), 4),
                    "index": status,
                },
                indent=1,
            )
        )
        return 0
    for case in cases:
        labels = ", ".join(
            f"{name} {weight:.2f}" for name, weight in sorted(case.labels.items(), key=lambda x: -x[1])
        )
        print(f"{case.distance:.3f}  {case.matched_on:5}  {case.case_id}  {labels}")
    if args.image and status["image_model"] != "ready":
        print(f"(image not searched: {status['image_model']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
