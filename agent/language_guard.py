"""The language guard: no certain diagnosis, no prescribing, no "you don't need a doctor".

Every sentence the agent is about to speak passes ``guard``; the rules are data
(``agent/language_guard.yaml``). A certain diagnosis is rewritten as a possibility; a
sentence that prescribes, doses or discourages care is replaced as a whole.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

RULES_FILE = Path(__file__).with_name("language_guard.yaml")


@dataclass(frozen=True)
class GuardRule:
    id: str
    kind: str
    pattern: re.Pattern[str]
    block: bool = False
    replace: str = ""


@dataclass
class Guarded:
    text: str
    changes: list[str] = field(default_factory=list)  # rule ids that fired


@dataclass(frozen=True)
class LanguageGuard:
    rules: tuple[GuardRule, ...]
    instead: dict[str, str]

    def __call__(self, sentence: str) -> Guarded:
        result = Guarded(sentence)
        for rule in self.rules:
            if not rule.pattern.search(result.text):
                continue
            result.changes.append(rule.id)
            if rule.block:
                result.text = self.instead[rule.kind]
                return result
            result.text = rule.pattern.sub(lambda m, r=rule: _fill(r.replace, m), result.text)
        if result.changes and result.text[:1].islower():
            result.text = result.text[0].upper() + result.text[1:]
        return result


def _fill(template: str, match: re.Match[str]) -> str:
    groups = match.groupdict()
    condition = (groups.get("article") or "") + (groups.get("condition") or "")
    return template.replace("{condition_lower}", condition.lower()).replace("{condition}", condition)


def load_guard(path: Path = RULES_FILE) -> LanguageGuard:
    data = yaml.safe_load(path.read_text())
    conditions = "|".join(re.escape(c) for c in sorted(data["conditions"], key=len, reverse=True))
    rules = tuple(
        GuardRule(
            id=spec["id"],
            kind=spec["kind"],
            pattern=re.compile(spec["pattern"].replace("{condition}", conditions), re.IGNORECASE),
            block=bool(spec.get("block", False)),
            replace=spec.get("replace", ""),
        )
        for spec in data["rules"]
    )
    missing = {rule.kind for rule in rules if rule.block} - set(data["instead"])
    if missing:
        raise ValueError(f"{path.name}: no 'instead' line for {sorted(missing)}")
    return LanguageGuard(rules, dict(data["instead"]))


@lru_cache(maxsize=1)
def default_guard() -> LanguageGuard:
    return load_guard()


def guard(sentence: str) -> Guarded:
    """Check one sentence against the reviewed rules file."""
    return default_guard()(sentence)
