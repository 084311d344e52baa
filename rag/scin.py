"""Convert SCIN's CSVs into ``metadata.json``: one clean, typed entry per case.

    python -m rag.scin convert CSV_DIR --out DIR [--limit N]

``CSV_DIR`` holds ``scin_cases.csv`` and ``scin_labels.csv`` as the bucket serves them. The
dataset's conventions are handled here: flags are the string "YES" (empty otherwise), list and
dict cells are Python literals written as strings, some cases have no image or no label, and a
few images and rows are duplicated. Image paths become ``images/<name>`` relative to ``DIR``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from configs.settings import hub_offline_environment
from rag.cases import CaseImage, ScinCase, write_cases
from rag.columns import (
    BODY_PARTS,
    CONDITION_SYMPTOMS,
    IMAGE_SLOTS,
    OTHER_SYMPTOMS,
    RACE_ETHNICITIES,
    REQUIRED_CASE_COLUMNS,
    REQUIRED_LABEL_COLUMNS,
    TEXTURES,
)

CASES_CSV = "scin_cases.csv"
LABELS_CSV = "scin_labels.csv"
METADATA = "metadata.json"
_EMPTY = {"", "nan", "none", "null"}
log = logging.getLogger(__name__)


class ScinFormatError(ValueError):
    """A CSV is not the SCIN CSV it should be; the message is one line that says the fix."""


@dataclass
class ConvertReport:
    cases: int = 0
    labelled: int = 0
    unlabelled: int = 0
    with_images: int = 0
    images: int = 0
    duplicate_cases: int = 0
    duplicate_images: int = 0
    labels_without_case: int = 0
    bad_cells: int = 0


def read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """The rows of a SCIN CSV as dicts; raises ScinFormatError on a missing, truncated or foreign file."""
    refetch = "delete it and run `bash scripts/download_scin.sh` again to fetch a fresh copy"
    if not path.exists():
        raise ScinFormatError(f"{path} not found: run `bash scripts/download_scin.sh` (it fetches the CSVs)")
    rows: list[dict[str, str]] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, strict=True)
            header = [name.strip() for name in next(reader, [])]
            missing = [name for name in required if name not in header]
            if missing:
                raise ScinFormatError(
                    f"{path.name} is not a SCIN CSV (no {', '.join(missing)} column): {refetch}"
                )
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    raise ScinFormatError(
                        f"{path.name} line {reader.line_num} has {len(row)} fields, expected {len(header)}: "
                        f"the file is truncated or corrupt; {refetch}"
                    )
                rows.append(dict(zip(header, row, strict=True)))
    except csv.Error as exc:
        raise ScinFormatError(f"{path.name} is corrupt ({exc}): {refetch}") from None
    except UnicodeDecodeError:
        raise ScinFormatError(f"{path.name} is not UTF-8 text: {refetch}") from None
    return rows


class _Cells:
    """Typed reads of one merged row; counts the cells that could not be parsed."""

    def __init__(self, row: dict[str, str], report: ConvertReport) -> None:
        self.row, self.report = row, report

    def text(self, column: str) -> str | None:
        value = (self.row.get(column) or "").strip()
        return None if value.lower() in _EMPTY else value

    def flag(self, column: str) -> bool:
        return (self.row.get(column) or "").strip().upper() in {"YES", "TRUE", "1"}

    def flags(self, prefix: str, names: tuple[str, ...]) -> list[str]:
        return [name for name in names if self.flag(f"{prefix}{name}")]

    def number(self, column: str) -> int | None:
        value = self.text(column)
        if value is None:
            return None
        try:
            return int(float(value))
        except ValueError:
            self.report.bad_cells += 1
            return None

    def literal(self, column: str, kind: type) -> Any:
        value = self.text(column)
        if value is None:
            return kind()
        try:
            parsed = ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            parsed = None
        if not isinstance(parsed, kind):
            self.report.bad_cells += 1
            log.warning("unreadable %s cell in case %s", column, self.row.get("case_id", "?"))
            return kind()
        return parsed


def _gradable(value: str | None) -> bool | None:
    if value is None:
        return None
    upper = value.upper()
    if "YES" in upper:
        return True
    return False if "NO" in upper.split("_") else None


def _weighted(cells: _Cells) -> dict[str, float]:
    raw = cells.literal("weighted_skin_condition_label", dict)
    labels: dict[str, float] = {}
    for name, weight in raw.items():
        try:
            labels[str(name).strip()] = float(weight)
        except (TypeError, ValueError):
            cells.report.bad_cells += 1
    return {name: weight for name, weight in labels.items() if name}


def _images(cells: _Cells, seen: set[str], report: ConvertReport) -> list[CaseImage]:
    images: list[CaseImage] = []
    for slot in IMAGE_SLOTS:
        source = cells.text(f"image_{slot}_path")
        if source is None:
            continue
        path = f"images/{Path(source).name}"
        if any(image.path == path for image in images):
            report.duplicate_images += 1  # the same photo twice in one case: keep one
            continue
        if path in seen:
            report.duplicate_images += 1  # the same photo in another case: both cases keep it
        seen.add(path)
        images.append(CaseImage(path=path, shot_type=cells.text(f"image_{slot}_shot_type"), source=source))
    return images


def case_from_row(row: dict[str, str], report: ConvertReport, seen_images: set[str]) -> ScinCase:
    """One merged (cases + labels) row as a ScinCase."""
    cells = _Cells(row, report)
    fitzpatrick = cells.text("fitzpatrick_skin_type")
    monk = {
        where: value
        for where in ("india", "us")
        if (value := cells.number(f"monk_skin_tone_label_{where}")) is not None
    }
    return ScinCase(
        case_id=(row.get("case_id") or "").strip(),
        source=cells.text("source") or "SCIN",
        release=cells.text("release"),
        year=cells.number("year"),
        age_group=cells.text("age_group"),
        sex=cells.text("sex_at_birth"),
        fitzpatrick=fitzpatrick if fitzpatrick and fitzpatrick.startswith("FST") else None,
        race_ethnicity=cells.flags("race_ethnicity_", RACE_ETHNICITIES),
        combined_race=cells.text("combined_race"),
        textures=cells.flags("textures_", TEXTURES),
        body_parts=cells.flags("body_parts_", BODY_PARTS),
        symptoms=cells.flags("condition_symptoms_", CONDITION_SYMPTOMS),
        other_symptoms=cells.flags("other_symptoms_", OTHER_SYMPTOMS),
        related_category=cells.text("related_category"),
        duration=cells.text("condition_duration"),
        images=_images(cells, seen_images, report),
        gradable=[
            vote
            for i in (1, 2, 3)
            if (vote := _gradable(cells.text(f"dermatologist_gradable_for_skin_condition_{i}"))) is not None
        ],
        dermatologist_labels=[
            str(x) for x in cells.literal("dermatologist_skin_condition_on_label_name", list)
        ],
        dermatologist_confidence=[
            int(x)
            for x in cells.literal("dermatologist_skin_condition_confidence", list)
            if isinstance(x, int | float)
        ],
        weighted_labels=_weighted(cells),
        dermatologist_fitzpatrick=[
            value
            for i in (1, 2, 3)
            if (value := cells.text(f"dermatologist_fitzpatrick_skin_type_label_{i}"))
        ],
        monk_skin_tone=monk,
    )


def merge_rows(
    case_rows: list[dict[str, str]], label_rows: list[dict[str, str]], *, limit: int | None = None
) -> tuple[list[ScinCase], ConvertReport]:
    """Join the two CSVs on case_id (every case kept, labelled or not), first row of a duplicate wins."""
    report = ConvertReport()
    labels: dict[str, dict[str, str]] = {}
    for row in label_rows:
        case_id = (row.get("case_id") or "").strip()
        earlier = labels.get(case_id)
        if earlier is None or not (earlier.get("weighted_skin_condition_label") or "").strip("{} "):
            labels[case_id] = row
    cases: list[ScinCase] = []
    seen_cases: set[str] = set()
    seen_images: set[str] = set()
    for row in case_rows:
        case_id = (row.get("case_id") or "").strip()
        if not case_id:
            report.bad_cells += 1
            continue
        if case_id in seen_cases:
            report.duplicate_cases += 1
            continue
        if limit is not None and len(cases) >= limit:
            break
        seen_cases.add(case_id)
        merged = {**labels.get(case_id, {}), **row}
        cases.append(case_from_row(merged, report, seen_images))
    report.labels_without_case = sum(1 for case_id in labels if case_id and case_id not in seen_cases)
    if limit is not None:
        report.labels_without_case = 0  # a partial conversion leaves most labels out on purpose
    report.cases = len(cases)
    report.labelled = sum(1 for case in cases if case.labelled)
    report.unlabelled = report.cases - report.labelled
    report.with_images = sum(1 for case in cases if case.images)
    report.images = sum(len(case.images) for case in cases)
    return cases, report


def convert(csv_dir: Path, out_dir: Path, *, limit: int | None = None) -> ConvertReport:
    """Read ``CSV_DIR/scin_cases.csv`` + ``scin_labels.csv``, write ``OUT_DIR/metadata.json``."""
    case_rows = read_csv(csv_dir / CASES_CSV, REQUIRED_CASE_COLUMNS)
    label_rows = read_csv(csv_dir / LABELS_CSV, REQUIRED_LABEL_COLUMNS)
    cases, report = merge_rows(case_rows, label_rows, limit=limit)
    write_cases(cases, out_dir / METADATA)
    return report


def main(argv: list[str] | None = None) -> int:
    hub_offline_environment()
    parser = argparse.ArgumentParser(prog="python -m rag.scin", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    conv = commands.add_parser("convert", help="scin_cases.csv + scin_labels.csv -> metadata.json")
    conv.add_argument("csv_dir", type=Path)
    conv.add_argument("--out", type=Path, required=True)
    conv.add_argument("--limit", type=int, default=None, help="keep only the first N cases")
    args = parser.parse_args(argv)
    try:
        report = convert(args.csv_dir, args.out, limit=args.limit)
    except (ScinFormatError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"metadata": str(args.out / METADATA), **asdict(report)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
