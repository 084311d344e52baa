"""The Retriever: merged image + text search, and graceful degradation."""

from __future__ import annotations

from pathlib import Path

from agent.backends.base import RetrievedCase
from agent.facts import extract_facts
from configs.settings import load_settings
from rag.retrieval import Retriever, merge_hits, query_from_facts
from rag.store import Hit
from tests.rag.conftest import BCC, ECZEMA, LABELLED, MOLE, BuiltIndex, jpeg_bytes

MOLE_PHOTO = "-5090473722737044187"


def test_a_described_mole_finds_the_mole_case_first(built_index: BuiltIndex) -> None:
    query = query_from_facts(
        extract_facts("A mole on my back is getting darker and bleeding, for a few years.")
    )
    cases = Retriever.from_settings(built_index.settings).search(query, k=3)
    assert [case.matched_on for case in cases] == ["text"] * 3
    assert cases[0].case_id == MOLE and cases[0].labels["Melanoma"] == 0.33
    assert cases[0].distance < cases[1].distance <= cases[2].distance


def test_a_photo_and_words_give_merged_hits_each_case_once(built_index: BuiltIndex) -> None:
    retriever = Retriever.from_settings(built_index.settings)
    query = query_from_facts(extract_facts("An itchy rash on my arms and legs for two weeks."))
    cases = retriever.search(query, image_jpeg=jpeg_bytes(MOLE_PHOTO), k=6)
    assert cases[0] == RetrievedCase(MOLE, cases[0].labels, cases[0].distance, "image")
    photo_only = retriever.search("", image_jpeg=jpeg_bytes(MOLE_PHOTO), k=3)
    assert [case.matched_on for case in photo_only] == ["image"] * 3
    assert photo_only[0].case_id == MOLE and photo_only[0].distance * 2 < photo_only[1].distance
    assert cases[1].matched_on == "text" and cases[1].case_id == ECZEMA
    assert len(cases) == 6 and len({case.case_id for case in cases}) == 6
    assert {case.case_id for case in cases} <= LABELLED
    assert {case.matched_on for case in cases} == {"image", "text"}


def test_status_reports_the_index_and_both_models(built_index: BuiltIndex) -> None:
    status = Retriever.from_settings(built_index.settings).status()
    assert status == {
        "index": "ready",
        "cases": 6,
        "images": 8,
        "text_model": "ready",
        "image_model": "ready",
    }


def test_without_siglip_weights_search_is_text_only(built_index: BuiltIndex, tmp_path: Path) -> None:
    settings = built_index.settings.model_copy(
        update={
            "embedding": built_index.settings.embedding.model_copy(
                update={"model_id": str(tmp_path / "no-siglip")}
            )
        }
    )
    retriever = Retriever.from_settings(settings)
    cases = retriever.search("Concern: a growth or mole.", image_jpeg=jpeg_bytes(MOLE_PHOTO), k=4)
    assert len(cases) == 4 and {case.matched_on for case in cases} == {"text"}
    assert retriever.status()["image_model"].startswith("missing: no SigLIP weights")
    assert retriever.search("", image_jpeg=jpeg_bytes(MOLE_PHOTO)) == []


def test_without_an_index_results_are_empty_and_health_says_missing(tmp_path: Path) -> None:
    retriever = Retriever.from_settings(load_settings(vector_store_dir=tmp_path / "db"))
    assert retriever.search("Concern: a rash.", image_jpeg=jpeg_bytes("x")) == []
    status = retriever.status()
    assert (status["index"], status["cases"]) == ("missing", 0)
    assert not (tmp_path / "db").exists()  # health checks never create a store


def test_a_broken_store_or_photo_never_raises(built_index: BuiltIndex, tmp_path: Path) -> None:
    retriever = Retriever.from_settings(built_index.settings)
    assert retriever.search("Concern: a rash.", image_jpeg=b"garbage", k=3)  # text still answers
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "chroma.sqlite3").write_bytes(b"this is not sqlite" * 100)
    bad = Retriever.from_settings(load_settings(vector_store_dir=broken))
    assert bad.search("Concern: a rash.") == []
    assert bad.status()["index"].startswith("error")


def test_merge_alternates_image_and_text_ranks_and_caps_k() -> None:
    image = [
        Hit("m/1", MOLE, {"Melanoma": 1.0}, 0.05),
        Hit("m/2", MOLE, {"Melanoma": 1.0}, 0.02),
        Hit("b/1", BCC, {}, 0.3),
    ]
    text = [Hit(ECZEMA, ECZEMA, {}, 0.2), Hit(MOLE, MOLE, {}, 0.25), Hit("x", "x", {}, 0.4)]
    merged = merge_hits(image, text, k=3)
    assert [(c.case_id, c.matched_on, c.distance) for c in merged] == [
        (MOLE, "image", 0.02),
        (ECZEMA, "text", 0.2),
        (BCC, "image", 0.3),
    ]
    assert merge_hits([], [], k=5) == []
