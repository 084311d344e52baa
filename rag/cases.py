"""A SCIN case with clean, typed fields: what ``metadata.json`` holds, one entry per case."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class MetadataError(ValueError):
    """``metadata.json`` is missing or unreadable; the message is one line that says the fix."""


@dataclass(frozen=True)
class CaseImage:
    path: str  # relative to the directory of metadata.json: "images/<name>.png"
    shot_type: str | None = None  # CLOSE_UP | AT_AN_ANGLE | AT_DISTANCE
    source: str = ""  # the path in the bucket: "dataset/images/<name>.png"


@dataclass
class ScinCase:
    case_id: str
    source: str = "SCIN"
    release: str | None = None
    year: int | None = None
    age_group: str | None = None
    sex: str | None = None
    fitzpatrick: str | None = None  # self-reported FST1..FST6; None for NONE_SELECTED
    race_ethnicity: list[str] = field(default_factory=list)
    combined_race: str | None = None
    textures: list[str] = field(default_factory=list)
    body_parts: list[str] = field(default_factory=list)  # body_parts_* suffixes
    symptoms: list[str] = field(default_factory=list)  # condition_symptoms_* suffixes
    other_symptoms: list[str] = field(default_factory=list)  # other_symptoms_* suffixes
    related_category: str | None = None
    duration: str | None = None  # condition_duration
    images: list[CaseImage] = field(default_factory=list)
    gradable: list[bool] = field(default_factory=list)  # one vote per dermatologist who graded
    dermatologist_labels: list[str] = field(default_factory=list)
    dermatologist_confidence: list[int] = field(default_factory=list)
    weighted_labels: dict[str, float] = field(default_factory=dict)
    dermatologist_fitzpatrick: list[str] = field(default_factory=list)
    monk_skin_tone: dict[str, int] = field(default_factory=dict)  # {"india": 3, "us": 4}

    @property
    def labelled(self) -> bool:
        return bool(self.weighted_labels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScinCase:
        fields = dict(data)
        fields["images"] = [CaseImage(**image) for image in data.get("images", [])]
        known = cls.__dataclass_fields__
        return cls(**{key: value for key, value in fields.items() if key in known})


def write_cases(cases: list[ScinCase], path: Path) -> None:
    """Write ``metadata.json`` atomically (a crash never leaves half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps([case.to_dict() for case in cases], indent=1, ensure_ascii=False))
    os.replace(partial, path)


def load_cases(path: Path) -> list[ScinCase]:
    """Read ``metadata.json`` (as written by ``python -m rag.scin convert``)."""
    if path.is_dir():
        path = path / "metadata.json"
    if not path.exists():
        raise MetadataError(
            f"{path} not found: run `bash scripts/download_scin.sh` (or `python -m rag.scin convert`) first"
        )
    try:
        data = json.loads(path.read_text())
        return [ScinCase.from_dict(entry) for entry in data]
    except (ValueError, TypeError, KeyError) as exc:
        raise MetadataError(
            f"{path} is not a SCIN metadata file ({type(exc).__name__}): re-run the conversion"
        ) from None
