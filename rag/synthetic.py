"""Synthetic cases in SCIN's CSV format (the real 73 columns and conventions), for the benchmark.

The rows look like SCIN's: "YES" flags, Python-literal label cells, 0-3 images per case, a
share of unlabelled cases. The conditions and their typical sites and symptoms are plausible,
not real data.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from rag.columns import CASE_COLUMNS, LABEL_COLUMNS

# name, related_category, frequency weight, typical body parts, symptoms, textures
CONDITIONS: list[tuple[str, str, float, tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = [
    (
        "Eczema",
        "RASH",
        20,
        ("arm", "leg", "back_of_hand", "head_or_neck"),
        ("itching", "burning"),
        ("rough_or_flaky", "raised_or_bumpy"),
    ),
    (
        "Allergic Contact Dermatitis",
        "RASH",
        6,
        ("back_of_hand", "arm", "head_or_neck"),
        ("itching", "burning"),
        ("raised_or_bumpy", "fluid_filled"),
    ),
    (
        "Psoriasis",
        "RASH",
        5,
        ("arm", "leg", "torso_back"),
        ("itching", "bothersome_appearance"),
        ("rough_or_flaky", "raised_or_bumpy"),
    ),
    ("Urticaria", "RASH", 6, ("torso_front", "arm", "leg"), ("itching",), ("raised_or_bumpy",)),
    ("Insect Bite", "RASH", 5, ("leg", "arm"), ("itching", "pain"), ("raised_or_bumpy",)),
    (
        "Tinea",
        "RASH",
        4,
        ("foot_sole", "genitalia_or_groin", "torso_front"),
        ("itching",),
        ("rough_or_flaky",),
    ),
    ("Folliculitis", "RASH", 4, ("leg", "buttocks", "torso_back"), ("itching", "pain"), ("raised_or_bumpy",)),
    ("Herpes Zoster", "RASH", 2, ("torso_front", "torso_back"), ("pain", "burning"), ("fluid_filled",)),
    ("Impetigo", "RASH", 2, ("head_or_neck",), ("itching", "pain"), ("fluid_filled", "rough_or_flaky")),
    (
        "Acne",
        "ACNE",
        5,
        ("head_or_neck", "torso_back"),
        ("pain", "bothersome_appearance"),
        ("raised_or_bumpy",),
    ),
    (
        "Melanocytic Nevus",
        "GROWTH_OR_MOLE",
        4,
        ("torso_back", "arm", "leg"),
        ("bothersome_appearance",),
        ("flat", "raised_or_bumpy"),
    ),
    (
        "SK/ISK",
        "GROWTH_OR_MOLE",
        3,
        ("torso_back", "head_or_neck"),
        ("itching", "bothersome_appearance"),
        ("raised_or_bumpy", "rough_or_flaky"),
    ),
    (
        "Verruca vulgaris",
        "GROWTH_OR_MOLE",
        2,
        ("back_of_hand", "foot_sole"),
        ("bothersome_appearance",),
        ("raised_or_bumpy", "rough_or_flaky"),
    ),
    (
        "Melanoma",
        "GROWTH_OR_MOLE",
        0.5,
        ("torso_back", "leg"),
        ("darkening", "increasing_size", "bleeding"),
        ("flat", "raised_or_bumpy"),
    ),
    (
        "Basal Cell Carcinoma",
        "GROWTH_OR_MOLE",
        0.6,
        ("head_or_neck",),
        ("bleeding", "increasing_size"),
        ("raised_or_bumpy",),
    ),
    (
        "SCC/SCCIS",
        "GROWTH_OR_MOLE",
        0.6,
        ("head_or_neck", "back_of_hand"),
        ("bleeding", "increasing_size", "pain"),
        ("rough_or_flaky", "raised_or_bumpy"),
    ),
    (
        "Actinic Keratosis",
        "GROWTH_OR_MOLE",
        1,
        ("head_or_neck", "back_of_hand", "arm"),
        ("bothersome_appearance",),
        ("rough_or_flaky",),
    ),
    (
        "Post-Inflammatory hyperpigmentation",
        "PIGMENTARY_PROBLEM",
        3,
        ("head_or_neck", "arm"),
        ("darkening", "bothersome_appearance"),
        ("flat",),
    ),
    (
        "Tinea Versicolor",
        "PIGMENTARY_PROBLEM",
        2,
        ("torso_back", "torso_front"),
        ("bothersome_appearance",),
        ("flat",),
    ),
]
DURATIONS = (
    "ONE_DAY",
    "LESS_THAN_ONE_WEEK",
    "ONE_TO_FOUR_WEEKS",
    "ONE_TO_THREE_MONTHS",
    "THREE_TO_TWELVE_MONTHS",
    "MORE_THAN_ONE_YEAR",
    "MORE_THAN_FIVE_YEARS",
    "SINCE_CHILDHOOD",
    "UNKNOWN",
)
AGES = ("AGE_18_TO_29", "AGE_30_TO_39", "AGE_40_TO_49", "AGE_50_TO_59", "AGE_60_TO_69", "AGE_70_TO_79", "")
SHOTS = ("CLOSE_UP", "AT_AN_ANGLE", "AT_DISTANCE")


def _weighted_labels(rng: random.Random, primary: str) -> dict[str, float]:
    others = rng.sample([c[0] for c in CONDITIONS if c[0] != primary], k=rng.randint(0, 2))
    raw = [rng.uniform(2.0, 4.0)] + [rng.uniform(0.3, 1.5) for _ in others]
    total = sum(raw)
    return {name: round(w / total, 2) for name, w in zip([primary, *others], raw, strict=True)}


def synthetic_rows(n: int, seed: int = 0) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """``n`` rows for scin_cases.csv and the matching rows for scin_labels.csv."""
    rng = random.Random(seed)
    weights = [c[2] for c in CONDITIONS]
    case_rows, label_rows = [], []
    for _ in range(n):
        name, category, _, parts, symptoms, textures = rng.choices(CONDITIONS, weights)[0]
        case_id = str(rng.randrange(-(2**63), 2**63))
        case = dict.fromkeys(CASE_COLUMNS, "")
        case.update(
            case_id=case_id,
            source="SCIN",
            release="1.0.0",
            year=str(rng.choice((2023, 2024))),
            age_group=rng.choice(AGES),
            sex_at_birth=rng.choice(("FEMALE", "MALE", "OTHER_OR_UNSPECIFIED")),
            fitzpatrick_skin_type=rng.choice(
                ("FST1", "FST2", "FST3", "FST4", "FST5", "FST6", "NONE_SELECTED")
            ),
            related_category=category,
            condition_duration=rng.choice(DURATIONS),
        )
        for part in rng.sample(parts, k=rng.randint(1, len(parts))):
            case[f"body_parts_{part}"] = "YES"
        for symptom in rng.sample(symptoms, k=rng.randint(0, len(symptoms))):
            case[f"condition_symptoms_{symptom}"] = "YES"
        for texture in rng.sample(textures, k=rng.randint(1, len(textures))):
            case[f"textures_{texture}"] = "YES"
        if rng.random() < 0.05:
            case["other_symptoms_fever"] = "YES"
        for slot in range(1, rng.choice((0, 1, 2, 2, 3, 3)) + 1):
            case[f"image_{slot}_path"] = f"dataset/images/{rng.randrange(10**18, 10**19)}.png"
            case[f"image_{slot}_shot_type"] = SHOTS[slot - 1]
        labels = dict.fromkeys(LABEL_COLUMNS, "")
        labelled = rng.random() > 0.1  # SCIN has cases no dermatologist could label
        weighted = _weighted_labels(rng, name) if labelled else {}
        labels.update(
            case_id=case_id,
            dermatologist_gradable_for_skin_condition_1="DEFAULT_YES_IMAGE_QUALITY_SUFFICIENT",
            dermatologist_skin_condition_on_label_name=str(list(weighted)),
            dermatologist_skin_condition_confidence=str([rng.randint(1, 5) for _ in weighted]),
            weighted_skin_condition_label=str(weighted),
            monk_skin_tone_label_us=str(rng.randint(1, 10)),
        )
        case_rows.append(case)
        label_rows.append(labels)
    return case_rows, label_rows


def write_synthetic_csvs(csv_dir: Path, n: int, seed: int = 0) -> None:
    """Write ``scin_cases.csv`` and ``scin_labels.csv`` with ``n`` synthetic cases."""
    csv_dir.mkdir(parents=True, exist_ok=True)
    cases, labels = synthetic_rows(n, seed)
    for name, columns, rows in (
        ("scin_cases.csv", CASE_COLUMNS, cases),
        ("scin_labels.csv", LABEL_COLUMNS, labels),
    ):
        with (csv_dir / name).open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(columns))
            writer.writeheader()
            writer.writerows(rows)
