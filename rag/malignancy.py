"""Which SCIN labels are malignant or pre-malignant, and how much of the retrieved evidence they carry.

The label list lives in ``malignancy.yaml`` beside this file. Malignant labels are a small
minority of SCIN: a low share among similar cases is weak evidence and never silences a red flag.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

import yaml

from agent.backends.base import RetrievedCase

MALIGNANCY_FILE = Path(__file__).with_name("malignancy.yaml")


@lru_cache(maxsize=1)
def _lexicon() -> tuple[frozenset[str], re.Pattern[str], frozenset[str]]:
    data = yaml.safe_load(MALIGNANCY_FILE.read_text())
    labels = frozenset(name.casefold() for name in data["labels"])
    keywords = re.compile(r"\b(?:" + "|".join(re.escape(k.casefold()) for k in data["keywords"]) + ")")
    benign = frozenset(name.casefold() for name in data.get("not_malignant", []))
    return labels, keywords, benign


def is_malignant(label: str) -> bool:
    """True for a malignant or pre-malignant SCIN label ("Melanoma", "SCC/SCCIS", "Actinic Keratosis")."""
    labels, keywords, benign = _lexicon()
    name = label.strip().casefold()
    if name in benign:
        return False
    return name in labels or keywords.search(name) is not None


def malignant_share(cases: list[RetrievedCase]) -> float:
    """The weight of malignancy labels over all label weight of the retrieved cases (0.0 when none)."""
    total = malignant = 0.0
    for case in cases:
        for label, weight in case.labels.items():
            weight = max(0.0, float(weight))
            total += weight
            malignant += weight if is_malignant(label) else 0.0
    return malignant / total if total > 0 else 0.0
