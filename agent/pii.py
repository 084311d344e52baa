"""Personal data out of everything we keep or send: typed placeholders in place of the data.

Presidio does the work: its pattern recognizers (e-mail, phone numbers via Google's
``phonenumbers``, credit cards, IBAN, US SSN, UK NHS numbers, IP addresses) plus ours for what
patients say aloud (their name, date of birth, street address, ID numbers). Presidio's NLP
engine runs on a *blank* spaCy English pipeline, a tokenizer with no statistical model: no
model package of unknown provenance is loaded, and nothing is downloaded. The cost is that
names are found by how people introduce themselves ("my name is ...", "this is ... calling",
"Mrs ..."), not by a named-entity model; ``python -m agent.evaluate`` measures the leaks.

``redact(text)`` is what logs, metrics, replay outputs, stored transcripts, escalation records
and cloud backends see.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)

PLACEHOLDERS = {
    "PERSON": "<NAME>",
    "PHONE_NUMBER": "<PHONE>",
    "EMAIL_ADDRESS": "<EMAIL>",
    "STREET_ADDRESS": "<ADDRESS>",
    "DATE_OF_BIRTH": "<DATE_OF_BIRTH>",
    "ID_NUMBER": "<ID_NUMBER>",
    "US_SSN": "<ID_NUMBER>",
    "UK_NHS": "<ID_NUMBER>",
    "UK_NINO": "<ID_NUMBER>",
    "CREDIT_CARD": "<ID_NUMBER>",
    "IBAN_CODE": "<ID_NUMBER>",
    "IP_ADDRESS": "<ID_NUMBER>",
}

_NAME_WORD = r"[a-z][a-z'\-]+"
_NOT_A_NAME = (
    r"(?!(?:and|i|im|i'm|from|calling|here|speaking|a|an|the|my|it|is|was|about|worried|not|so|very|"
    r"just|having|having|sorry|fine|okay|ok|good|calling|ringing|phoning|concerned|scared|afraid|"
    r"pregnant|diabetic|allergic|on|in|at|with|also|really|quite|still|feeling|getting|going)\b)"
)
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
    r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DATE = (
    rf"(?:\d{{1,2}}[/.\-]\d{{1,2}}[/.\-]\d{{2,4}}|\d{{4}}-\d{{2}}-\d{{2}}|"
    rf"(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH},?\s+\d{{4}}|"
    rf"{_MONTH}\s+(?:the\s+)?\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}|{_MONTH}\s+\d{{4}}|(?:19|20)\d{{2}})"
)
_STREET = (
    r"(?:street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl|terrace|"
    r"close|crescent|square|sq|parkway|pkwy|highway|hwy|circle|cir|row|gardens|grove|hill|mews)"
)

# (entity, name, regex, score): our recognizers for what patients say aloud.
SPOKEN_PATTERNS: list[tuple[str, str, str, float]] = [
    (
        "PERSON",
        "self introduction",
        rf"(?<=\b(?:my name is|my name's|name is|i am called|i'm called|im called|call me|"
        rf"my full name is|the patient is|patient's name is|my son is called|my daughter is called|"
        rf"my child is called|his name is|her name is)\s+){_NOT_A_NAME}{_NAME_WORD}"
        rf"(?:\s+{_NOT_A_NAME}{_NAME_WORD}){{0,2}}",
        0.85,
    ),
    (
        "PERSON",
        "capitalised introduction",
        r"(?<=\b(?:this is|i'm|i am|it's|it is)\s+)(?-i:(?!(?:Doctor|Dr|Mr|Mrs|Ms|Miss|English|British|"
        r"American|Canadian|Irish|Scottish|Welsh|Australian|Indian|Jewish|Muslim|Christian|Catholic|"
        r"Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|January|February|March|April|May|"
        r"June|July|August|September|October|November|December|I)\b)[A-Z][a-z'\-]+(?:\s+[A-Z][a-z'\-]+){0,2})",
        0.6,
    ),
    (
        "PERSON",
        "title and surname",
        r"(?-i:\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Doctor|Professor|Prof)\.?\s+[A-Z][a-z'\-]+(?:\s+[A-Z][a-z'\-]+)?)",
        0.7,
    ),
    (
        "DATE_OF_BIRTH",
        "date of birth",
        rf"(?<=\b(?:born on|born in|born|date of birth is|date of birth|birthday is|birthday's|dob is|dob|"
        rf"birth date is|birthdate is)\s+(?:the\s+)?){_DATE}",
        0.9,
    ),
    (
        "STREET_ADDRESS",
        "numbered street",
        rf"\b\d{{1,5}}[a-z]?\s+(?:[a-z][a-z'\-]+\s+){{1,3}}{_STREET}\b\.?",
        0.8,
    ),
    (
        "STREET_ADDRESS",
        "I live at",
        r"(?<=\b(?:i live at|i live on|my address is|address is|i'm at|we live at|we live on)\s+)"
        r"[^,.;!?]{3,60}",
        0.8,
    ),
    (
        "STREET_ADDRESS",
        "UK postcode",
        r"(?-i:\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b)",
        0.75,
    ),
    (
        "STREET_ADDRESS",
        "US zip with context",
        r"(?<=\b(?:zip|zip code|postcode|postal code)\s+(?:is\s+)?)\d{5}(?:-\d{4})?\b",
        0.8,
    ),
    (
        "ID_NUMBER",
        "identifier with context",
        r"(?<=\b(?:id|i\.d\.|number|no\.|mrn|nhs|medicare|medicaid|insurance|policy|member|account|"
        r"passport|licen[cs]e|social security|hospital number|record number|patient number)"
        r"(?:\s+(?:number|no\.?|id|is|was|#))*\s*:?\s+)(?-i:[A-Z]{0,3})\s?\d[\d\s\-]{3,18}[\dA-Za-z]\b",
        0.65,
    ),
    (
        "PHONE_NUMBER",
        "phone with context",
        r"(?<=\b(?:call me on|call me at|reach me on|reach me at|phone|mobile|cell|telephone|number is|"
        r"text me on|ring me on)(?:\s+(?:number|no\.?|is|on|at))*\s*:?\s+)\+?\(?\d[\d\s\-().]{6,16}\d\b",
        0.7,
    ),
    # Below the phone recognizer's score: a phone number stays a <PHONE>.
    ("ID_NUMBER", "long digit run", r"\b\d[\d\- ]{7,}\d\b", 0.35),
]


@lru_cache(maxsize=1)
def _engines() -> tuple[Any, Any]:
    import spacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine, Pattern, PatternRecognizer, RecognizerRegistry
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        EmailRecognizer,
        IbanRecognizer,
        IpRecognizer,
        NhsRecognizer,
        PhoneRecognizer,
        UkNinoRecognizer,
        UsSsnRecognizer,
    )
    from presidio_anonymizer import AnonymizerEngine

    class OfflineEmailRecognizer(EmailRecognizer):
        """Presidio's, with the domain check on tldextract's bundled suffix list (no fetch)."""

        _extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)

        def validate_result(self, pattern_text: str) -> bool:
            return bool(self._extract(pattern_text.rsplit("@", 1)[-1]).suffix)

    nlp_engine = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": "blank:en"}])
    nlp_engine.nlp = {"en": spacy.blank("en")}  # a tokenizer only: no model is loaded or fetched
    registry = RecognizerRegistry(supported_languages=["en"])
    for recognizer in (
        OfflineEmailRecognizer(),
        PhoneRecognizer(supported_regions=("US", "GB", "CA", "AU", "IE", "IN", "DE", "FR")),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        NhsRecognizer(),
        UkNinoRecognizer(),
    ):
        registry.add_recognizer(recognizer)
    by_entity: dict[str, list[Any]] = {}
    for entity, name, regex, score in SPOKEN_PATTERNS:
        by_entity.setdefault(entity, []).append(Pattern(name=name, regex=regex, score=score))
    for entity, patterns in by_entity.items():
        registry.add_recognizer(PatternRecognizer(supported_entity=entity, patterns=patterns))
    analyzer = AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=["en"])
    return analyzer, AnonymizerEngine()


def find_pii(text: str) -> list[tuple[str, int, int]]:
    """(entity, start, end) for every piece of personal data in ``text``."""
    analyzer, _ = _engines()
    results = analyzer.analyze(text=text, language="en", score_threshold=0.3)
    return [(r.entity_type, r.start, r.end) for r in results]


def redact(text: str) -> str:
    """``text`` with personal data replaced by typed placeholders (``<NAME>``, ``<PHONE>`` ...)."""
    if not text or not text.strip():
        return text
    from presidio_anonymizer.entities import OperatorConfig

    analyzer, anonymizer = _engines()
    results = analyzer.analyze(text=text, language="en", score_threshold=0.3)
    if not results:
        return text
    operators = {
        entity: OperatorConfig("replace", {"new_value": placeholder})
        for entity, placeholder in PLACEHOLDERS.items()
    }
    operators["DEFAULT"] = OperatorConfig("replace", {"new_value": "<PERSONAL_DATA>"})
    return anonymizer.anonymize(text=text, analyzer_results=results, operators=operators).text


def warm_up() -> None:
    """Build the engines before the first patient speaks (about a second)."""
    redact("My name is Test Person, call me on 555 123 4567.")
