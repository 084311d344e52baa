"""Malignancy labels and their share among retrieved cases."""

from __future__ import annotations

import pytest

from agent.backends.base import RetrievedCase
from rag.malignancy import is_malignant, malignant_share


@pytest.mark.parametrize(
    "label",
    [
        "Melanoma",
        "Basal Cell Carcinoma",
        "SCC/SCCIS",
        "Actinic Keratosis",
        "Kaposi's sarcoma of skin",
        "Cutaneous T Cell Lymphoma",
        "Melanoma in situ",
        "Lentigo maligna",
        "Bowen's disease",
        "Keratoacanthoma",
        "Atypical Nevus",
        "Dysplastic naevus",
        "squamous cell carcinoma",
        "Nodular melanoma",
        "Merkel cell carcinoma",
    ],
)
def test_malignant_and_premalignant_labels_are_recognised(label: str) -> None:
    assert is_malignant(label)


@pytest.mark.parametrize(
    "label",
    [
        "Melanocytic Nevus",
        "SK/ISK",
        "Seborrheic Keratosis",
        "Eczema",
        "Abscess",
        "Acne",
        "Psoriasis",
        "Actinic purpura",
        "Post-Inflammatory hyperpigmentation",
        "Scar Condition",
    ],
)
def test_benign_labels_are_not(label: str) -> None:
    assert not is_malignant(label)


def test_the_share_is_weighted_by_the_dermatologists_label_weights() -> None:
    cases = [
        RetrievedCase("a", {"Melanocytic Nevus": 0.5, "Melanoma": 0.33, "SK/ISK": 0.17}, 0.1, "image"),
        RetrievedCase("b", {"Basal Cell Carcinoma": 1.0}, 0.2, "text"),
        RetrievedCase("c", {"Eczema": 0.69, "Psoriasis": 0.31}, 0.3, "text"),
        RetrievedCase("d", {}, 0.4, "text"),  # an unlabelled case carries no weight
    ]
    assert malignant_share(cases) == pytest.approx((0.33 + 1.0) / 3)
    assert malignant_share([]) == 0.0
    assert malignant_share(cases[2:]) == 0.0
