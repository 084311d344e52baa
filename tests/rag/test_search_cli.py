"""python -m rag.search: the nearest cases as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from rag.search import main
from tests.rag.conftest import MOLE, BuiltIndex


def test_search_prints_case_id_labels_distance_and_index(
    built_index: BuiltIndex, tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("EMBEDDING__MODEL_ID", built_index.settings.embedding.model_id)  # the tiny SigLIP
    photo = tmp_path / "photo.png"
    photo.write_bytes((built_index.data / "images" / "-5090473722737044187.png").read_bytes())
    code = main(
        [
            "dark mole on my back that bleeds",
            "--image",
            str(photo),
            "--k",
            "4",
            "--db",
            str(built_index.db),
            "--json",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed["cases"]) == 4
    first = printed["cases"][0]
    assert set(first) == {"case_id", "labels", "distance", "matched_on"}
    assert (first["case_id"], first["matched_on"]) == (MOLE, "image")
    assert first["labels"] == {"Melanocytic Nevus": 0.5, "Melanoma": 0.33, "SK/ISK": 0.17}
    assert {case["matched_on"] for case in printed["cases"]} == {"text", "image"}


def test_text_search_ranks_the_described_case_first(built_index: BuiltIndex, capsys) -> None:
    assert main(["dark mole on my back that bleeds", "--db", str(built_index.db), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cases"][0]["case_id"] == MOLE and printed["cases"][0]["matched_on"] == "text"
    assert printed["index"]["image_model"].startswith("missing")
    assert 0 <= printed["malignant_share"] <= 1 and printed["index"]["cases"] == 6


def test_search_without_an_index_says_how_to_build_one(tmp_path: Path, capsys) -> None:
    assert main(["a rash", "--db", str(tmp_path / "db"), "--json"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "index_embeddings.sh" in err
    assert main(["a rash", "--image", str(tmp_path / "none.jpg")]) == 2
