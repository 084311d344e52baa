"""Indexing into ChromaDB: both collections, batches, incremental re-runs, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.cases import CaseImage, load_cases, write_cases
from rag.image_encoder import ImageEncoder
from rag.index import build_index, main
from rag.store import CaseStore, StoreError
from tests.rag.conftest import LABELLED, MOLE, png_bytes


def test_every_labelled_case_and_photo_is_indexed_once(
    scin_dir: Path, tmp_path: Path, text_encoder, tiny_siglip: Path
) -> None:
    store = CaseStore(tmp_path / "db")
    report = build_index(
        load_cases(scin_dir),
        scin_dir,
        store,
        text_encoder,
        ImageEncoder(tiny_siglip),
        batch_size=4,
        progress=False,
    )
    assert (report.cases, report.labelled, report.text_added) == (9, 6, 6)
    assert store.ids("text") == LABELLED
    # eczema 2, mole 1, bcc 2 (its repeated third photo once), urticaria 1, psoriasis 2 (1 shared w/ eczema)
    assert report.images_added == 8 and store.count("image") == 8
    assert f"{MOLE}/-5090473722737044187.png" in store.ids("image")
    assert report.image_model == "ready"


def test_a_second_run_skips_what_is_indexed_and_adds_only_new_cases(
    scin_dir: Path, tmp_path: Path, text_encoder, tiny_siglip: Path
) -> None:
    store, encoder = CaseStore(tmp_path / "db"), ImageEncoder(tiny_siglip)
    cases = load_cases(scin_dir)
    build_index(cases, scin_dir, store, text_encoder, encoder, progress=False)
    again = build_index(cases, scin_dir, CaseStore(tmp_path / "db"), text_encoder, encoder, progress=False)
    assert (again.text_added, again.text_skipped, again.images_added, again.images_skipped) == (0, 6, 0, 8)

    new = load_cases(scin_dir)[1]
    new.case_id, new.images = "42", [CaseImage(path="images/new.png", shot_type="CLOSE_UP")]
    (scin_dir / "images" / "new.png").write_bytes(png_bytes("new"))
    write_cases(cases + [new], scin_dir / "metadata.json")
    third = build_index(load_cases(scin_dir), scin_dir, store, text_encoder, encoder, progress=False)
    assert (third.text_added, third.images_added) == (1, 1)
    assert store.count("text") == 7 and store.count("image") == 9


def test_missing_and_unreadable_photos_are_counted_not_fatal(
    scin_dir: Path, tmp_path: Path, text_encoder, tiny_siglip: Path
) -> None:
    (scin_dir / "images" / "-5090473722737044187.png").unlink()
    (scin_dir / "images" / "-8264150040066125563.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    report = build_index(
        load_cases(scin_dir),
        scin_dir,
        CaseStore(tmp_path / "db"),
        text_encoder,
        ImageEncoder(tiny_siglip),
        progress=False,
    )
    assert (report.image_files_missing, report.image_files_unreadable, report.images_added) == (1, 1, 6)
    assert report.text_added == 6


def test_without_siglip_the_index_is_text_only_and_says_why(
    scin_dir: Path, tmp_path: Path, text_encoder
) -> None:
    store = CaseStore(tmp_path / "db")
    report = build_index(
        load_cases(scin_dir),
        scin_dir,
        store,
        text_encoder,
        None,
        image_problem="no SigLIP weights in models/x",
        progress=False,
    )
    assert report.image_model == "missing: no SigLIP weights in models/x"
    assert store.count("text") == 6 and store.count("image") == 0


def test_vectors_of_another_image_model_are_refused(
    scin_dir: Path, tmp_path: Path, text_encoder, tiny_siglip: Path
) -> None:
    store = CaseStore(tmp_path / "db")
    store.collection("image", encoder="some-other-model", dimension=1152)
    with pytest.raises(StoreError, match="--rebuild"):
        build_index(
            load_cases(scin_dir), scin_dir, store, text_encoder, ImageEncoder(tiny_siglip), progress=False
        )


def test_the_command_line_indexes_incrementally_and_prints_a_summary(
    scin_dir: Path, tmp_path: Path, capsys
) -> None:
    args = ["--data", str(scin_dir), "--db", str(tmp_path / "db"), "--no-progress"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["text_entries"] == 6 and first["text_added"] == 6
    assert first["image_model"].startswith("missing: no SigLIP weights")  # the real weights are not here
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["text_added"], second["text_skipped"]) == (0, 6)
    assert main(["--data", str(tmp_path / "nowhere"), "--db", str(tmp_path / "db")]) == 1
    assert "download_scin.sh" in capsys.readouterr().err
