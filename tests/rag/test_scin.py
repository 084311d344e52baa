"""SCIN CSVs -> metadata.json: the dataset's real columns and quirks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from rag.cases import load_cases
from rag.columns import CASE_COLUMNS, LABEL_COLUMNS, MERGED_COLUMNS
from rag.scin import ScinFormatError, convert, main
from tests.rag.conftest import (
    BAD_LABEL_CELL,
    BCC,
    ECZEMA,
    FIXTURES,
    MOLE,
    NO_LABEL_ROW,
    PSORIASIS,
    TINEA,
    UNLABELLED,
    URTICARIA,
)


def header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return next(csv.reader(handle))


def test_the_fixtures_carry_the_real_73_columns_split_as_the_bucket_serves_them() -> None:
    assert (
        len(MERGED_COLUMNS) == 73
        and MERGED_COLUMNS[0] == "case_id"
        and MERGED_COLUMNS[-1] == "monk_skin_tone_label_us"
    )
    assert header(FIXTURES / "scin_cases.csv") == list(CASE_COLUMNS)
    assert header(FIXTURES / "scin_labels.csv") == list(LABEL_COLUMNS)


def test_conversion_merges_on_case_id_and_reports_the_quirks(csv_dir: Path, tmp_path: Path) -> None:
    report = convert(csv_dir, tmp_path / "out")
    cases = {case.case_id: case for case in load_cases(tmp_path / "out" / "metadata.json")}
    assert set(cases) == {
        ECZEMA,
        MOLE,
        BCC,
        TINEA,
        UNLABELLED,
        URTICARIA,
        PSORIASIS,
        NO_LABEL_ROW,
        BAD_LABEL_CELL,
    }
    assert report.cases == 9 and report.labelled == 6 and report.unlabelled == 3
    assert report.duplicate_cases == 1  # urticaria's row is written twice
    assert report.labels_without_case == 1
    assert report.duplicate_images == 2  # one repeated inside a case, one shared by two cases
    assert report.bad_cells == 1  # the cut-short weighted label
    assert report.with_images == 8 and report.images == 11


def test_a_case_has_clean_typed_fields(csv_dir: Path, tmp_path: Path) -> None:
    convert(csv_dir, tmp_path)
    eczema = next(case for case in load_cases(tmp_path) if case.case_id == ECZEMA)
    assert eczema.body_parts == ["arm", "leg"]
    assert eczema.symptoms == ["itching", "burning"]
    assert eczema.other_symptoms == ["no_relevant_symptoms"]
    assert eczema.textures == ["raised_or_bumpy", "rough_or_flaky"]
    assert eczema.race_ethnicity == ["white"]
    assert (eczema.duration, eczema.fitzpatrick, eczema.age_group, eczema.sex) == (
        "ONE_TO_FOUR_WEEKS",
        "FST3",
        "AGE_30_TO_39",
        "FEMALE",
    )
    assert (eczema.related_category, eczema.year, eczema.release) == ("RASH", 2023, "1.0.0")
    assert eczema.weighted_labels == {"Eczema": 0.69, "Allergic Contact Dermatitis": 0.23, "Psoriasis": 0.08}
    assert eczema.dermatologist_labels == ["Eczema", "Allergic Contact Dermatitis", "Psoriasis"]
    assert eczema.dermatologist_confidence == [4, 3, 2]
    assert eczema.gradable == [True, True]
    assert eczema.dermatologist_fitzpatrick == ["FST3", "FST2"]
    assert eczema.monk_skin_tone == {"india": 3, "us": 3}
    assert [(i.path, i.shot_type, i.source) for i in eczema.images] == [
        ("images/-3205742176803893704.png", "CLOSE_UP", "dataset/images/-3205742176803893704.png"),
        ("images/-4762289084741430925.png", "AT_DISTANCE", "dataset/images/-4762289084741430925.png"),
    ]
    raw = json.loads((tmp_path / "metadata.json").read_text())
    assert isinstance(raw[0]["case_id"], str) and isinstance(raw[0]["weighted_labels"]["Eczema"], float)


def test_missing_images_labels_and_duplicates_are_handled(csv_dir: Path, tmp_path: Path) -> None:
    convert(csv_dir, tmp_path)
    cases = {case.case_id: case for case in load_cases(tmp_path)}
    assert cases[TINEA].images == [] and cases[TINEA].labelled
    assert [image.path for image in cases[BCC].images] == [
        "images/-1224453040113386436.png",
        "images/-6582913472330051244.png",
    ]
    assert cases[PSORIASIS].images[0].path == cases[ECZEMA].images[0].path  # shared photo kept in both
    assert cases[MOLE].weighted_labels["Melanoma"] == 0.33  # a later empty label row does not win
    unlabelled = cases[UNLABELLED]
    assert (
        unlabelled.weighted_labels == {} and unlabelled.gradable == [False] and unlabelled.fitzpatrick is None
    )
    assert unlabelled.age_group is None
    assert cases[NO_LABEL_ROW].weighted_labels == {} and cases[NO_LABEL_ROW].images
    assert cases[BAD_LABEL_CELL].weighted_labels == {}
    assert cases[BAD_LABEL_CELL].dermatologist_labels == ["Acne", "Rosacea"]
    assert cases[URTICARIA].other_symptoms == ["fever", "fatigue"]


def test_the_command_line_converts_and_limits(csv_dir: Path, tmp_path: Path, capsys) -> None:
    assert main(["convert", str(csv_dir), "--out", str(tmp_path / "out"), "--limit", "3"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["cases"] == 3 and printed["metadata"].endswith("metadata.json")
    assert [case.case_id for case in load_cases(tmp_path / "out")] == [ECZEMA, MOLE, BCC]


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda p: p.write_text(p.read_text()[:-60]), "truncated or corrupt"),
        (lambda p: p.write_text("<html><body>Sign in to the Wi-Fi</body></html>\n"), "not a SCIN CSV"),
        (lambda p: p.write_text(p.read_text().rstrip("\n") + ',"unterminated\n'), "corrupt"),
        (lambda p: p.unlink(), "not found"),
        (lambda p: p.write_bytes(b"case_id,image_1_path,condition_duration\n\xff\xfe\x00bad\n"), "not UTF-8"),
    ],
)
def test_a_damaged_csv_fails_with_one_line_that_says_the_fix(
    csv_dir: Path, tmp_path: Path, capsys, damage, expected: str
) -> None:
    damage(csv_dir / "scin_cases.csv")
    with pytest.raises(ScinFormatError) as raised:
        convert(csv_dir, tmp_path / "out")
    assert expected in str(raised.value)
    assert main(["convert", str(csv_dir), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "download_scin.sh" in err
    assert not (tmp_path / "out" / "metadata.json").exists()
