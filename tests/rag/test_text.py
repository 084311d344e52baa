"""The words of the text index: case documents and the query from the conversation."""

from __future__ import annotations

from pathlib import Path

from agent.facts import ClinicalFacts, extract_facts
from rag.cases import load_cases
from rag.retrieval import query_from_facts
from rag.text import case_document
from tests.rag.conftest import ECZEMA, MOLE


def test_a_case_document_names_labels_symptoms_site_duration_and_skin_type(scin_dir: Path) -> None:
    cases = {case.case_id: case for case in load_cases(scin_dir)}
    document = case_document(cases[MOLE])
    assert document.startswith("Diagnosis: Melanocytic Nevus, Melanoma, SK/ISK.")
    for words in (
        "Concern: a growth or mole.",
        "Symptoms: bleeding, getting bigger, getting darker.",
        "Body site: back.",
        "Duration: more than one year.",
        "Skin type: Fitzpatrick type 2.",
    ):
        assert words in document
    assert "Body site: arm, leg." in case_document(cases[ECZEMA])


def test_the_query_uses_the_same_words_and_never_the_patients_own() -> None:
    said = (
        "My name is Dana. I have a mole on my back that has been bleeding and getting bigger "
        "for about three weeks, and it itches. I burn easily in the sun."
    )
    query = query_from_facts(extract_facts(said))
    assert "Concern: a mole or dark spot." in query
    for words in (
        "getting bigger",
        "bleeding",
        "itching",
        "Body site: back.",
        "Duration: one to four weeks.",
        "Skin type: Fitzpatrick type 2.",
    ):
        assert words in query
    assert "Dana" not in query and "my back" not in query


def test_no_facts_no_query() -> None:
    assert query_from_facts(ClinicalFacts()) == ""
