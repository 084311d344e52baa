"""The columns of SCIN's two CSVs, in the order of the merged table (73 columns).

``scin_cases.csv`` holds the contributor's answers and the images (57 columns);
``scin_labels.csv`` holds the dermatologists' labels (``case_id`` + 16). They join on ``case_id``.
"""

from __future__ import annotations

RACE_ETHNICITIES = (
    "american_indian_or_alaska_native",
    "asian",
    "black_or_african_american",
    "hispanic_latino_or_spanish_origin",
    "middle_eastern_or_north_african",
    "native_hawaiian_or_pacific_islander",
    "white",
    "other_race",
    "prefer_not_to_answer",
)
TEXTURES = ("raised_or_bumpy", "flat", "rough_or_flaky", "fluid_filled")
BODY_PARTS = (
    "head_or_neck",
    "arm",
    "palm",
    "back_of_hand",
    "torso_front",
    "torso_back",
    "genitalia_or_groin",
    "buttocks",
    "leg",
    "foot_top_or_side",
    "foot_sole",
    "other",
)
CONDITION_SYMPTOMS = (
    "bothersome_appearance",
    "bleeding",
    "increasing_size",
    "darkening",
    "itching",
    "burning",
    "pain",
    "no_relevant_experience",
)
OTHER_SYMPTOMS = (
    "fever",
    "chills",
    "fatigue",
    "joint_pain",
    "mouth_sores",
    "shortness_of_breath",
    "no_relevant_symptoms",
)
IMAGE_SLOTS = (1, 2, 3)

CASE_COLUMNS: tuple[str, ...] = (
    "case_id",
    "source",
    "release",
    "year",
    "age_group",
    "sex_at_birth",
    "fitzpatrick_skin_type",
    *(f"race_ethnicity_{r}" for r in RACE_ETHNICITIES),
    *(f"textures_{t}" for t in TEXTURES),
    *(f"body_parts_{b}" for b in BODY_PARTS),
    *(f"condition_symptoms_{s}" for s in CONDITION_SYMPTOMS),
    *(f"other_symptoms_{s}" for s in OTHER_SYMPTOMS),
    "related_category",
    "condition_duration",
    *(f"image_{i}_path" for i in IMAGE_SLOTS),
    *(f"image_{i}_shot_type" for i in IMAGE_SLOTS),
    "combined_race",
    "race_ethnicity_two_or_more_after_mitigation",
)
LABEL_COLUMNS: tuple[str, ...] = (
    "case_id",
    *(f"dermatologist_gradable_for_skin_condition_{i}" for i in (1, 2, 3)),
    "dermatologist_skin_condition_on_label_name",
    "dermatologist_skin_condition_confidence",
    "weighted_skin_condition_label",
    *(f"dermatologist_gradable_for_fitzpatrick_skin_type_{i}" for i in (1, 2, 3)),
    *(f"dermatologist_fitzpatrick_skin_type_label_{i}" for i in (1, 2, 3)),
    "gradable_for_monk_skin_tone_india",
    "gradable_for_monk_skin_tone_us",
    "monk_skin_tone_label_india",
    "monk_skin_tone_label_us",
)
MERGED_COLUMNS: tuple[str, ...] = CASE_COLUMNS + LABEL_COLUMNS[1:]

# Enough of each file's header to tell a SCIN CSV from an error page or another file.
REQUIRED_CASE_COLUMNS = ("case_id", "image_1_path", "condition_duration")
REQUIRED_LABEL_COLUMNS = ("case_id", "weighted_skin_condition_label")
