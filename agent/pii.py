"""Personal data out of everything we keep or send: typed placeholders in place of the data.

``redact(text)`` is what logs, metrics, replay outputs, stored transcripts, escalation records
and cloud backends see. It must take out who the patient is and leave what is wrong with them:
"I'm john smith" loses the name, "I'm diabetic", "I'm seventy-two", "my blood sugar is 14" and
"It's Psoriasis" stay as they are. ``tests/agent/data/redaction_cases.yaml`` holds both kinds.

Presidio does the work. Its own recognizers find what has a written shape: e-mail addresses,
phone numbers (Google's ``phonenumbers``), credit cards, IBANs, US SSNs, UK NHS numbers
(checksum), National Insurance numbers, IP addresses. Its NLP engine runs on a *blank* spaCy
English pipeline, a tokenizer with no statistical model: no model package of unknown provenance
is loaded, nothing is downloaded.

Without a named-entity model, and with what patients *say* rather than type, we add our own
recognizer, ``SPOKEN``: a table of rules, each with the reason it exists. They cover what no
library has a pattern for:

- names, found by how people introduce themselves ("I'm ...", "my name is ...", "this is ...
  calling", "Jane here", "my son Lucas", "my lad, Kieran Doyle, he's ...", "Mrs O'Brien"), not
  by a model. The words after "I'm" are a name unless they are known not to be one
  (``_not_names()``: clinical and everyday words, spaCy's stop and number words, every word of
  ``agent/findings.yaml``), or a lower-case "-ing"/"-ed" word. Name words are any letters with
  their accents (\\p{L}\\p{M}: "José García", "Siobhán", also typed as letter + combining mark);
  a name found once is taken out wherever else it is said;
- numbers said as words ("five five five, one two three ...": seven or more digit words);
- e-mail addresses said aloud ("jane dot doe at gmail dot com", "it's jane doe eighty five at
  gmail": the user name goes back from "at" to the first function word);
- dates of birth, with ordinals and years in words ("the third of March nineteen eighty"), read
  out as numbers after "DOB" ("fourteen three eighty five"), or a full date said on its own, the
  answer to "your date of birth?" ("14th of March 1985."). A date of onset or treatment is
  clinical and stays, even in full ("it started on the 3rd of March 2024"); a bare full date with
  nothing else in the sentence is taken for a date of birth;
- where they live ("I live in Springfield, Illinois", "New York City", "42 Elm Street",
  "forty-two Mill Road", UK postcodes);
- record, hospital and insurance numbers as Whisper writes them ("XJH4567 8821", "XKD 4471 9920",
  "A B C 1 2 3 4 5", "MR-00123456", "MR 00123456", "B-K-R four four nine, one seven two").

Context is part of each rule ("my hospital number is ...") rather than Presidio's context
enhancement: the enhancer scores any match with a context word among the five words before it,
which would take the year out of "I was in hospital in 2019", and it reads spaCy lemmas, which a
blank pipeline does not produce. ``python -m tools.evaluate`` measures the leaks.
"""

from __future__ import annotations

import ipaddress
import logging
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import regex
from prometheus_client import Counter

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

FINDINGS_FILE = Path(__file__).with_name("findings.yaml")
# Every text ``redact`` could not clean (it raised): what it was for is then withheld or sent
# without words (a log line, an escalation's transcript), and an operator is told (alert on any).
REDACTION_FAILURES_TOTAL = Counter(
    "redaction_failures", "Texts the redactor failed on (none of them kept or sent as they were)."
)

# --- words that are not names -----------------------------------------------------------------

# What follows "I'm", "It's", "my son ..." when it is not a name, by kind. spaCy's stop and
# number words and every word of agent/findings.yaml are added in _not_names().
_NOT_NAME_VOCABULARY = {
    "how they are": (
        "fine ok okay alright well unwell ill sick poorly better worse good bad great awful terrible "
        "horrible tired exhausted worried scared afraid frightened terrified anxious nervous concerned "
        "upset stressed depressed embarrassed confused sure unsure certain positive negative sorry glad "
        "happy sad lonely desperate struggling stuck lucky alone home away new old young late early due "
        "healthy fit active weak shaky sweaty cold sore itchy crazy weird strange odd normal fed up pale "
        "fair dark tanned freckly ginger blonde redhead bald black white brown asian mixed"
    ),
    "conditions and treatments": (
        "diabetic prediabetic pre type asthmatic asthma epileptic epilepsy coeliac celiac anaemic anemic "
        "allergic intolerant lactose arthritic arthritis psoriatic psoriasis eczema lupus rosacea acne "
        "shingles ringworm impetigo cellulitis dermatitis urticaria melanoma vitiligo scabies melasma "
        "herpes carcinoma basal squamous cell keratosis actinic seborrhoeic seborrheic naevus nevus cyst "
        "lipoma haemangioma hemangioma pemphigoid folliculitis boil abscess candida thrush tinea "
        "pityriasis molluscum chickenpox measles scarlet erysipelas gout hidradenitis keloid alopecia "
        "chilblains intertrigo angioedema anaphylaxis sepsis meningitis syndrome disease tumour tumor "
        "hypertensive hypertension hypothyroid menopausal postmenopausal perimenopausal pregnant "
        "immunosuppressed immunocompromised hiv aids covid chemo chemotherapy radiotherapy transplant "
        "insulin dialysis remission autistic dyslexic adhd bipolar disabled deaf blind obese overweight "
        "underweight vegan vegetarian smoker nonsmoker drinker sober haemophiliac hemophiliac sensitive "
        "photosensitive gluten nut peanut dairy egg latex nickel shellfish wheat soy"
    ),
    "who they are to others, what they do": (
        "nurse doctor gp carer caregiver parent mother mum mom father dad grandmother grandma nan granny "
        "grandfather grandad granddad grandpa wife husband partner son daughter child kid baby teenager "
        "student pupil teacher pensioner retired unemployed employed worker builder farmer gardener chef "
        "cook cleaner hairdresser mechanic plumber electrician driver pilot soldier veteran athlete "
        "runner swimmer cyclist surfer diver dermatologist pharmacist physio physiotherapist midwife "
        "paramedic dentist surgeon vet patient single married divorced widowed separated male female man "
        "woman boy girl lady adult twin ex non former self"
    ),
    "medicines": (
        "penicillin amoxicillin flucloxacillin doxycycline methotrexate prednisolone prednisone warfarin "
        "metformin amlodipine isotretinoin roaccutane lamotrigine adalimumab humira steroids antibiotics "
        "antihistamines ibuprofen paracetamol aspirin statins hydrocortisone dermovate betnovate eumovate "
        "elocon fucidin fucibet daktarin canesten protopic tacrolimus aciclovir acyclovir valaciclovir "
        "terbinafine clotrimazole miconazole mupirocin bactroban sudocrem diprobase doublebase aveeno "
        "cetraben epaderm vaseline piriton cetirizine loratadine fexofenadine ventolin salbutamol "
        "apixaban rivaroxaban clopidogrel ramipril lisinopril atorvastatin simvastatin levothyroxine "
        "omeprazole sertraline fluoxetine citalopram naproxen codeine tramadol morphine ozempic "
        "semaglutide dupixent dupilumab stelara ustekinumab cosentyx secukinumab enbrel etanercept "
        "infliximab rituximab azathioprine ciclosporin cyclosporine mycophenolate hydroxychloroquine "
        "spironolactone nitrofurantoin clarithromycin erythromycin lymecycline minocycline tetracycline "
        "cefalexin cephalexin accutane tretinoin retinol adapalene differin duac epiduo permethrin "
        "ivermectin"
    ),
    "age and time": (
        "years year old months month weeks week days day aged age teens twenties thirties forties fifties "
        "sixties seventies eighties nineties dozen couple half point percent monday tuesday wednesday "
        "thursday friday saturday sunday january february march april may june july august september "
        "october november december today tomorrow yesterday tonight morning afternoon evening night "
        "weekend christmas easter"
    ),
    "nationality and faith (skin type matters)": (
        "english british american canadian irish scottish welsh australian indian pakistani chinese "
        "african caribbean european polish italian spanish portuguese french german dutch greek turkish "
        "russian ukrainian romanian bulgarian swedish norwegian danish finnish mexican brazilian "
        "colombian jamaican nigerian ghanaian kenyan somali ethiopian egyptian moroccan arab iranian "
        "iraqi syrian afghan bangladeshi nepali filipino vietnamese thai korean japanese latino latina "
        "hispanic caucasian jewish muslim christian catholic protestant hindu sikh buddhist atheist"
    ),
    "titles (the name follows them)": "mr mrs ms miss mx dr prof professor sir madam",
}
# Words that are never a name, even after "my name is": spaCy's stop words and these.
_FILLER_WORDS = """
    hi hello hey yes yeah yep no nope um uh er erm hmm oh ah like actually basically literally
    honestly obviously definitely probably maybe currently usually also right calling speaking
    ringing phoning bless i'm i've i'd i'll it's that's there's he's she's we're they're you're
"""

# Given names that are also everyday words: a name when capitalised ("I'm Grace", "call me Will").
NAMES_THAT_ARE_WORDS = frozenset(
    "will grace hope faith joy mark bill frank dawn pat ray rose sue jack summer sunny art gene "
    "lily daisy ruby amber holly ivy jade olive pearl heather iris violet may june april august".split()
)
# Given names that end like a verb ("-ed", "-ing"), which would otherwise count as not names.
NAMES_LIKE_VERBS = frozenset(
    "ahmed mohammed muhammed mohamed alfred wilfred winifred mildred manfred jared sterling irving".split()
)
# Words of a place's name that are also everyday words, so not names: "New York City", "Little Rock".
PLACE_WORDS = frozenset(
    "new old great little upper lower north south east west saint st city town village county state bay "
    "beach park hill hills heights springs falls valley island isle lake port fort mount bridge green".split()
)
# Small words inside a name or place: "María de la Cruz", "Newcastle upon Tyne".
NAME_PARTICLES = frozenset("van von de del della der den da di du la le bin ibn al el upon on under".split())


@lru_cache(maxsize=1)
def _function_words() -> frozenset[str]:
    """Lower-case words that are never a name: spaCy's stop words and the fillers above."""
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS) | frozenset(_FILLER_WORDS.split())


@lru_cache(maxsize=1)
def _not_names() -> frozenset[str]:
    """Lower-case words that are not a name: the above, spaCy's number words, the findings lexicon's."""
    import yaml
    from spacy.lang.en.lex_attrs import _num_words, _ordinal_words

    words = set(_function_words()) | set(_num_words) | set(_ordinal_words)
    words.update(word for kind in _NOT_NAME_VOCABULARY.values() for word in kind.split())
    try:
        lexicon = yaml.safe_load(FINDINGS_FILE.read_text()) or {}
    except (OSError, yaml.YAMLError):
        log.warning("cannot read %s: its words may be taken for names", FINDINGS_FILE)
        lexicon = {}
    phrases: list[str] = []
    for finding in (lexicon.get("findings") or {}).values():
        phrases += finding.get("phrases", []) + finding.get("absent_phrases", [])
    for sites in (lexicon.get("body_sites") or {}).values():
        phrases += sites
    words.update(word.strip(",.") for phrase in phrases for word in str(phrase).lower().split())
    return frozenset(words)


def _is_name(word: str, how: str) -> bool:
    """Whether ``word`` can be part of a name where a rule of kind ``how`` found it.

    ``name``: they said it is their name, so any word but a function word ("my name is anna").
    ``maybe``: any case, and not a known non-name ("I'm john smith" but not "I'm diabetic").
    ``cased``: capitalised, and not a known non-name ("this is Maria" but not "This is Eczema").
    """
    low = word.lower().replace("’", "'").removesuffix("'s")
    capitalised = word[:1].isupper()
    if capitalised and low in NAMES_THAT_ARE_WORDS:
        return True
    if how == "name":
        return low not in _function_words()
    if how == "cased" and not capitalised:
        return False
    not_names = _not_names()
    return not all(
        part in not_names or (not capitalised and low not in NAMES_LIKE_VERBS and _verb_form(part))
        for part in low.split("-")
    )


def _verb_form(word: str) -> bool:
    """Lower-case "-ing" and "-ed" words after "I'm" are states, not names: worried, scratching."""
    return (word.endswith("ing") and len(word) > 4) or (word.endswith("ed") and len(word) > 4)


# --- the spoken rules ---------------------------------------------------------------------------

_APOS = "['’]"
# A letter and its combining accents: "José" typed as "e" + U+0301 is one word, not "Jos" + "é".
_LETTERS = r"\p{L}[\p{L}\p{M}]*"
_WORD = rf"{_LETTERS}(?:['’\-]{_LETTERS})*"  # a name word in any alphabet: José, O'Brien, Smith-Jones
_NAME = rf"(?P<pii>{_WORD}(?:[ \t]+{_WORD}){{0,3}})"  # up to four; _is_name decides how many
_DIGIT_WORD = r"(?:zero|oh|o|nought|one|two|three|four|five|six|seven|eight|nine|double|triple)"
_UNITS = r"(?:one|two|three|four|five|six|seven|eight|nine)"
_TEENS = r"(?:ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen)"
_TENS = r"(?:twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety)"
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
    r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_ORDINAL_DAY = (
    r"(?:(?:twenty|thirty)[\s\-]?(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth)|"
    r"first|second|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth|eleventh|twelfth|thirteenth|"
    r"fourteenth|fifteenth|sixteenth|seventeenth|eighteenth|nineteenth|twentieth|thirtieth)"
)
_DAY = rf"(?:\d{{1,2}}(?:st|nd|rd|th)?|{_ORDINAL_DAY})"
_SPOKEN_YEAR = (
    rf"(?:(?:eighteen|nineteen|twenty)[\s\-](?:hundred|(?:oh|o)[\s\-]{_UNITS}|{_TEENS}|{_TENS}(?:[\s\-]{_UNITS})?)|"
    rf"two\s+thousand(?:\s+and)?(?:[\s\-](?:{_TEENS}|{_TENS}(?:[\s\-]{_UNITS})?|{_UNITS}))?)"
)
_YEAR = rf"(?:\d{{4}}|{_APOS}\d{{2}}|{_SPOKEN_YEAR})"
_DATE = (
    rf"(?:\d{{1,2}}[/.\-]\d{{1,2}}[/.\-]\d{{2,4}}|\d{{4}}-\d{{2}}-\d{{2}}|"
    rf"(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTH}(?:,?\s+{_YEAR})?|"
    rf"{_MONTH}\s+(?:the\s+)?{_DAY}(?:,?\s+{_YEAR})?|{_MONTH},?\s+{_YEAR}|{_YEAR})\b"
)
# A house number said as Whisper writes it: "42", "221B", "forty-two", "nine", "a hundred and ten".
_SPOKEN_NUMBER = (
    rf"(?:(?:a|one|{_UNITS})[\s\-]hundred(?:[\s\-]and)?(?:[\s\-](?:{_TENS}(?:[\s\-]{_UNITS})?|{_TEENS}|{_UNITS}))?|"
    rf"{_TENS}(?:[\s\-]{_UNITS})?|{_TEENS}|{_UNITS})"
)
_HOUSE_NUMBER = rf"(?:\d{{1,5}}[a-z]?|{_SPOKEN_NUMBER})"
# A capitalised word of a street's name: "Mill", "Oakfield", "St. John's", "Saint-Denis".
_CAPITALISED = r"(?-i:(?:St|Mt)\.|\p{Lu}[\p{L}\p{M}'’\-]*)"
_STREET = (
    r"(?:street|st|avenue|ave|road|rd|lane|ln|drive|dr|boulevard|blvd|court|ct|way|place|pl|terrace|"
    r"close|crescent|square|sq|parkway|pkwy|highway|hwy|circle|cir|row|gardens|grove|hill|mews)"
)
# Street types that mean nothing else, so also in lower case: "42 elm street", "forty-two Mill road".
# The others ("close", "way", "drive", "hill" ...) count only capitalised: "3 Moles close together".
_STREET_PLAIN = r"(?:street|avenue|road|lane|crescent|boulevard|terrace|gardens|mews|parkway|highway)"
# The street type ends the address; its dot only after an abbreviation ("St.", not "Crescent.").
_STREET_END = (
    rf"(?:(?-i:(?=\p{{Lu}})){_STREET}|{_STREET_PLAIN})\b"
    r"(?:(?<=\b(?:st|ave|rd|ln|dr|blvd|ct|pl|sq|pkwy|hwy|cir))\.)?"
)
_ID_CONTEXT = (
    r"(?:member(?:ship)?|insurance|insurer|policy|hospital|record|patient|nhs|chi|medicare|medicaid|"
    r"mrn|m\.r\.n\.|chart|case|reference|ref|account|passport|licen[cs]e|social\s+security|"
    r"health\s+card|subscriber|group|claim|id|i\.d\.)"
)
# One piece of an ID as Whisper writes it: "XJH4567", "8821", "A" (spelt out), "four".
_ID_PIECE = rf"(?:(?-i:\b\p{{Lu}}{{1,4}}\b)|\p{{L}}*\d[\p{{L}}\d]*|\b{_DIGIT_WORD}\b)"
# Between two pieces: a space, hyphen, dot or slash; a comma only before digits said as words,
# as Whisper groups them ("four four nine, one seven two").
_ID_GAP = rf"(?:[\s\-./]{{1,2}}|,\s*(?=\b{_DIGIT_WORD}\b))"
_TLD = r"(?:com|net|org|edu|gov|info|biz|io|me|co|ac|uk|us|ca|au|nz|ie|de|fr|es|it|nl|in)"
_EMAIL_WORD = r"[\p{L}\d][\p{L}\p{M}\d_\-]*"
_EMAIL_DOT = r"(?:\.|\s+dot\s+)"
# Mail services people name without the ".com" ("at gmail"), as Whisper writes them ("g mail").
_MAIL_PROVIDER = (
    r"(?:g[\s\-]?mail|googlemail|hotmail|outlook|yahoo|icloud|aol|proton\s?mail|btinternet|comcast|msn)"
)
# A full date: day, month AND year, in digits or words ("the 14th of March, 1985", "03/14/1985").
_FULL_DATE = (
    rf"(?:\d{{1,2}}[/.\-]\d{{1,2}}[/.\-]\d{{2,4}}|\d{{4}}-\d{{2}}-\d{{2}}|"
    rf"(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTH},?\s+{_YEAR}|{_MONTH}\s+(?:the\s+)?{_DAY},?\s+{_YEAR})\b"
)
# One number as said in a date read out: "14", "fourteen", "oh", "eighty".
_NUMBER_TOKEN = rf"(?:\d{{1,4}}|{_DIGIT_WORD}|{_TEENS}|{_TENS}|ten|{_ORDINAL_DAY})"
_RELATIVE = (
    r"(?:son|daughter|child|kid|boy|girl|baby|husband|wife|partner|mum|mom|mother|father|dad|brother|"
    r"sister|grandson|granddaughter|grandma|grandmother|grandpa|grandfather|friend|neighbour|"
    r"neighbor|carer|niece|nephew|aunt|uncle|cousin|fianc[eé]e?|lad|lass|little\s+one)"
)
# Who a name set off by commas belongs to: "my lad, Kieran Doyle, ...", "a nurse myself, Yetunde Okafor, ...".
_PERSON_WORD = (
    rf"(?:\b(?:my|our)\s+(?:little\s+|baby\s+|eldest\s+|youngest\s+|older\s+|younger\s+)?{_RELATIVE}|"
    r"\bmyself|\bnurse|\bpatient)"
)
# A capitalised name word in any alphabet: "Yetunde", "O'Brien", "Mackenzie-Ross", "Zoë".
_CAPITALISED_NAME = r"(?-i:\p{Lu}[\p{L}\p{M}]*(?:['’\-]\p{L}[\p{L}\p{M}]*)*)"


class Rule(NamedTuple):
    """One way patients say personal data. The data is the ``pii`` group, or the whole match."""

    entity: str
    why: str
    regex: str
    score: float = 0.8
    # How the span is cut to the data: "" as matched; "name"/"maybe"/"cased" the leading
    # words that _is_name accepts; "address" up to the first clause word ("and", "but" ...);
    # "id" from the first to the last piece with a digit, if it has four digits or more;
    # "place" capitalised place words, and ", State" after them; "email" the domain and the
    # user name said before it.
    words: str = ""


SPOKEN: list[Rule] = [
    # --- names
    Rule(
        "PERSON",
        "they say it is their name: 'my name is anna', 'name's Bob', 'my son's name is Leo'",
        rf"\b(?:name\s+is|name{_APOS}s|i\s+am\s+called|i{_APOS}?m\s+called|(?:his|her|their)\s+name\s+is|"
        rf"(?:full|first|last|sur)\s*name\s+is|(?:{_RELATIVE})\s+is\s+called|goes\s+by)\s+"
        rf"(?:(?:um|uh|er|erm),?\s+)?{_NAME}",
        0.85,
        "name",
    ),
    Rule(
        "PERSON",
        "they introduce themselves: 'I'm john smith'; _is_name keeps 'I'm diabetic'",
        rf"\b(?:i{_APOS}?m|i\s+am|the\s+patient\s+is)\s+(?:(?:um|uh|er|erm),?\s+)?{_NAME}",
        0.7,
        "maybe",
    ),
    Rule(
        "PERSON",
        "they announce themselves: 'this is Maria calling'; 'This is Eczema' is not a name",
        rf"\b(?:this\s+is|it{_APOS}s|it\s+is|on\s+behalf\s+of|call\s+me)\s+{_NAME}",
        0.7,
        "cased",
    ),
    Rule(
        "PERSON",
        "... in lower case when 'calling', 'speaking' or 'here' follows: 'this is tom calling'",
        rf"\b(?:this\s+is|it{_APOS}s)\s+(?={_NAME}\s+(?:calling|speaking|here)\b)",
        0.7,
        "maybe",
    ),
    Rule(
        "PERSON",
        "their name first on the phone: 'Jane here', 'Hi, Tom Lee here'",
        rf"(?:^|[.!?]\s+|\b(?:hi|hello|hey|yes|yeah|morning|afternoon|evening)[,!.]?\s+)"
        rf"(?=(?P<pii>{_WORD}(?:\s+{_WORD})?)\s+here\b)",
        0.7,
        "cased",
    ),
    Rule(
        "PERSON",
        "a relative by name: 'my son Lucas has a rash', 'our son Lucas' ('my son keeps scratching' is not)",
        rf"\b(?:my|our)\s+(?:little\s+|baby\s+|eldest\s+|youngest\s+|older\s+|younger\s+)?{_RELATIVE},?\s+{_NAME}",
        0.7,
        "cased",
    ),
    Rule(
        "PERSON",
        "a First Last set off by commas after who they are: 'my lad, Kieran Doyle, he's fifteen', "
        "'I'm a nurse myself, Yetunde Okafor, I work nights' ('my little girl, she's four' is not)",
        rf"{_PERSON_WORD}\s*,\s+(?P<pii>{_CAPITALISED_NAME}"
        rf"(?:\s+(?:(?:{'|'.join(sorted(NAME_PARTICLES))})\s+){{0,2}}{_CAPITALISED_NAME}){{1,3}})"
        r"(?=\s*(?:[,;.!?]|$))",
        0.7,
        "cased",
    ),
    Rule(
        "PERSON",
        "a title before a surname: 'Mrs. O'Brien', 'Dr Okafor'",
        rf"(?-i:\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Doctor|Prof|Professor)\b)\.?\s+{_NAME}",
        0.75,
        "cased",
    ),
    Rule(
        "PERSON",
        "... in lower case where the title means nothing else: 'mrs o'brien here', 'mr. patel' "
        "('ms', 'miss', 'dr', 'mr' without its dot are other words too: MS, an MR scan)",
        rf"\b(?:mrs\.?|mr\.)\s+{_NAME}",
        0.75,
        "maybe",
    ),
    # --- numbers said aloud
    Rule(
        "PHONE_NUMBER",
        "a phone number said digit by digit: 'my number is five five five, one two three ...'",
        rf"\b(?:(?:my|our|the|phone|mobile)\s+number|phone|mobile|cell|call\s+me|ring\s+me|text\s+me|reach\s+me)\b"
        rf"[^.!?\d]{{0,20}}?"
        rf"(?P<pii>\b{_DIGIT_WORD}(?:[\s,.\-]+{_DIGIT_WORD}\b){{6,}})",
        0.75,
    ),
    Rule(
        "ID_NUMBER",
        "any seven or more digits said as words is a number about someone, not a measurement",
        rf"\b{_DIGIT_WORD}(?:[\s,.\-]+{_DIGIT_WORD}\b){{6,}}",
        0.6,
    ),
    Rule(
        "PHONE_NUMBER",
        "a phone number after a phone word, in shapes phonenumbers does not take",
        r"\b(?:call\s+me\s+(?:on|at)|reach\s+me\s+(?:on|at)|phone|mobile|cell|telephone|(?:my|our)\s+number\s+is|"
        r"text\s+me\s+on|ring\s+me\s+on|ringing\s+from|calling\s+from)(?:\s+(?:number|no\.?|is|on|at))*"
        r"\s*:?\s+(?P<pii>\+?\(?\d[\d\s\-().]{6,16}\d)\b",
        0.7,
    ),
    Rule(
        "ID_NUMBER",
        "a long run of digits is an identifier (below a phone number's score)",
        r"\b\d[\d\- ]{7,}\d\b",
        0.35,
    ),
    # --- e-mail said aloud
    Rule(
        "EMAIL_ADDRESS",
        "an e-mail address said aloud: 'jane dot doe at gmail dot com', 'jane doe eighty five at gmail'; "
        "the words before 'at' back to the first function word ('it's', 'me', 'is') are the user name",
        rf"(?<=\S\s+)(?P<pii>(?:at|@)\s+(?:{_EMAIL_WORD}(?:{_EMAIL_DOT}{_EMAIL_WORD}){{0,3}}{_EMAIL_DOT}{_TLD}|"
        rf"{_MAIL_PROVIDER}(?:{_EMAIL_DOT}{_EMAIL_WORD}){{0,3}}))\b",
        0.8,
        "email",
    ),
    Rule(
        "EMAIL_ADDRESS",
        "all of what follows 'my email is' up to the domain: 'jane doe at gmail dot com', '... at gmail'",
        rf"\be-?mail(?:\s+address)?(?:\s+is|\s+me\s+at|:)?\s+"
        rf"(?P<pii>[^,;!?]{{1,60}}?(?:(?:{_EMAIL_DOT}{_TLD}\b)+|\b{_MAIL_PROVIDER}\b(?!{_EMAIL_DOT})))",
        0.8,
    ),
    # --- dates of birth
    Rule(
        "DATE_OF_BIRTH",
        "a date after 'born', 'date of birth', 'birthday', 'DOB', in digits or words",
        rf"\b(?:born|date\s+of\s+birth|d\.?o\.?b\.?|birthday|birth\s*date)(?:{_APOS}s)?(?:\s*(?:is|was|on|in|:|-))*\s+"
        rf"(?P<pii>{_DATE})",
        0.9,
    ),
    Rule(
        "DATE_OF_BIRTH",
        "a date of birth read out as numbers: 'DOB fourteen three eighty five', 'date of birth 14 3 85' "
        "(two numbers or more; not after 'born', which is followed by '3 weeks early')",
        rf"\b(?:date\s+of\s+birth|d\.?o\.?b\.?|birthday|birth\s*date)(?:{_APOS}s)?(?:\s*(?:is|was|:|-))*\s+"
        rf"(?P<pii>(?:the\s+)?{_NUMBER_TOKEN}\b(?:[\s,/.\-]+{_NUMBER_TOKEN}\b){{1,7}})",
        0.9,
    ),
    Rule(
        "DATE_OF_BIRTH",
        "a full date (day, month and year) said on its own, the answer to 'your date of birth?': "
        "'14th of March 1985.' (a date with what happened, 'it started on the 3rd of March 2024', stays)",
        rf"(?:^|(?<=[.!?]\s+))(?:(?:um|uh|er|erm|yes|yeah|so|it{_APOS}s|it\s+is|that{_APOS}s|that\s+is)[,.]?\s+){{0,3}}"
        rf"(?P<pii>{_FULL_DATE})(?=\s*[.!?]*\s*$|\s*[.!?]\s)",
        0.85,
    ),
    # --- where they live
    Rule(
        "STREET_ADDRESS",
        "a house number in digits or words before a capitalised street name: '42 Elm Street', "
        "'221B Baker Street', 'at forty-two Mill Road', 'nine Oakfield Crescent' ('2 small spots close "
        "together' is not)",
        rf"\b{_HOUSE_NUMBER}\s+(?:{_CAPITALISED}\s+){{1,3}}{_STREET_END}",
        0.8,
    ),
    Rule(
        "STREET_ADDRESS",
        "... and in lower case before a street type that means nothing else: '42 elm street'",
        rf"\b\d{{1,5}}[a-z]?\s+(?:\p{{L}}[\p{{L}}'’\-]+\s+){{1,3}}{_STREET_PLAIN}\b",
        0.8,
    ),
    Rule(
        "STREET_ADDRESS",
        "what follows 'my address is', 'I live at', up to the end of the clause",
        r"\b(?:my\s+address\s+is|address\s+is|(?:i|we)\s+live\s+at|(?:i|we)\s+(?:am|are|'m|'re|’m|’re)\s+"
        r"staying\s+at)\s+(?P<pii>[^.;!?]{3,80})",
        0.8,
        "address",
    ),
    Rule(
        "STREET_ADDRESS",
        "a capitalised place they live in or come from: 'I live in Springfield'",
        rf"\b(?:(?:i|we)\s+live\s+(?:in|on|near)|(?:i{_APOS}m|i\s+am|we{_APOS}re|we\s+are)\s+from|"
        rf"(?:i|we)\s+come\s+from|based\s+in|moved\s+(?:here\s+)?from)\s+"
        rf"(?:(?:the|a)\s+(?:city|town|village|county|suburbs?|outskirts)\s+(?:of|called|near|outside)\s+)?"
        rf"(?P<pii>{_WORD}(?:\.?,?[ \t]+{_WORD}){{0,5}})",
        0.7,
        "place",
    ),
    Rule("STREET_ADDRESS", "a UK postcode", r"(?-i:\b[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2}\b)", 0.75),
    Rule(
        "STREET_ADDRESS",
        "a US zip code after 'zip'",
        r"\b(?:zip|zip\s+code|postcode|postal\s+code)\s+(?:is\s+)?(?P<pii>\d{5}(?:-\d{4})?)\b",
        0.8,
    ),
    # --- record, hospital and insurance numbers
    Rule(
        "ID_NUMBER",
        "an ID after its name, as Whisper writes it: 'member ID is XJH4567 8821', 'A B C 1 2 3', "
        "'member number's H-L-P two two eight, zero four one', a lower-case prefix 'member id is xkd 4471'",
        rf"\b{_ID_CONTEXT}(?:\s+(?:id|i\.d\.|number|no\.?|num|card|code|#))*"
        rf"(?:{_APOS}s|\s+(?:is|was|it{_APOS}s))?"
        rf"[\s:#,]+(?P<pii>(?:\p{{L}}{{1,3}}[\s\-]+(?=\d))?{_ID_PIECE}(?:{_ID_GAP}{_ID_PIECE}){{0,14}})",
        0.7,
        "id",
    ),
    Rule(
        "ID_NUMBER",
        "a record code with a letter prefix, with or without context: 'MR-00123456', 'mr-00123456'",
        r"\b(?:(?-i:\p{Lu}{1,4})[\-/]?|\p{L}{1,4}[\-/])\d{5,}\b",
        0.6,
    ),
    Rule(
        "ID_NUMBER",
        "capitals then six digits or more, spaced: 'MR 00123456', 'XKD 4471 9920' ('SPF 50', "
        "'Vitamin D 50000 units', 'the UK 100 000' are not)",
        r"(?-i:\b\p{Lu}{1,4}) (?!\d{1,3}(?: \d{3})+\b)(?:\d{6,}|\d{3,5}[\s\-]\d{3,}(?:[\s\-]\d{3,}){0,2})\b",
        0.6,
    ),
]


# --- cutting a match down to the data ----------------------------------------------------------

_WORD_RE = regex.compile(_WORD)
_TOKEN_RE = regex.compile(r"\S+")
_ID_PIECE_RE = regex.compile(_ID_PIECE, regex.IGNORECASE)
_DIGIT_WORD_RE = regex.compile(rf"^{_DIGIT_WORD}$", regex.IGNORECASE)
_CLAUSE_WORD_RE = regex.compile(
    r"\s+(?:and|but|so|because|since|which|where|who|with|while|when|if|though)\b", regex.IGNORECASE
)


def _name_span(text: str, start: int, end: int, how: str) -> tuple[int, int] | None:
    """The leading words of ``text[start:end]`` that can be a name (``_is_name``), if any."""
    first = last = None
    for match in _WORD_RE.finditer(text, start, end):
        word = match.group()
        if last is not None and word.lower() in NAME_PARTICLES:
            continue  # "de" in "María de la Cruz": the next word decides
        if not _is_name(word, how):
            break
        first, last = first or match, match
    if first is None or last is None:
        return None
    stop = last.end() - 2 if last.group()[-2:].lower() in ("'s", "’s") else last.end()
    return first.start(), stop  # "<NAME>'s mum"


def _address_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """An address up to the end of its clause: "7 Rose Lane, Leeds" but not ", my mole is ..."."""
    clause = text[start:end]
    if cut := _CLAUSE_WORD_RE.search(clause):
        clause = clause[: cut.start()]
    segments = clause.split(",")
    kept = segments[0]
    for segment in segments[1:]:
        words = segment.split()
        first = words[0].lower().replace("’", "'") if words else ""
        if not first or not (words[0][0].isupper() or first[0].isdigit()) or first in _function_words():
            break
        kept += "," + segment
    kept = kept.rstrip(" ,")
    if not regex.search(r"\d|\p{Lu}", kept):
        return None  # "I live at home with my parents"
    return start, start + len(kept)


def _id_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """From the first piece to the last with a digit, if there are four digits or more in all."""
    pieces = list(_ID_PIECE_RE.finditer(text, start, end))
    digits = [
        sum(c.isdigit() for c in p.group()) or int(bool(_DIGIT_WORD_RE.match(p.group()))) for p in pieces
    ]
    if sum(digits) < 4:
        return None
    last = max(i for i, n in enumerate(digits) if n)
    if pieces[0].start() > start and text[start : pieces[0].start()].strip(" -").lower() in _function_words():
        return None  # "In my case, in 2019 ...": "in" is no prefix
    return start, pieces[last].end()  # from ``start``: a lower-case prefix ("xkd") is no piece


# Words before "at gmail ..." that end the user name going back: "it's jane ..." / "email is jane ...".
_NOT_USER_NAME = frozenset("email e-mail mail address contact reach write send".split())
_USER_NAME_JOIN = frozenset("dot underscore dash hyphen".split())


@lru_cache(maxsize=1)
def _spoken_number_words() -> frozenset[str]:
    from spacy.lang.en.lex_attrs import _num_words

    return frozenset(_num_words) | {"oh", "nought", "double", "triple"}


def _email_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """The domain and, going back from it, the words of the user name: "it's <jane dot doe 85 at gmail>".

    A service named without its ".com" ("at gmail") needs a user name with "dot", "underscore" or a
    number in it: "I was looking at Outlook" is not an address.
    """
    first = None
    plain = not regex.search(rf"{_EMAIL_DOT}{_TLD}\b", text[start:end], regex.IGNORECASE)
    for match in reversed(list(_TOKEN_RE.finditer(text, max(0, start - 120), start))[-8:]):
        word = match.group().lower().rstrip(",").replace("’", "'")
        if (
            match.group().endswith(",")
            or word in _NOT_USER_NAME
            or (word in _function_words() and word not in _spoken_number_words() | _USER_NAME_JOIN)
        ):
            break
        first = match
    if first is None:
        return None
    user = text[first.start() : start].lower().split()
    if plain and not any(
        w in _USER_NAME_JOIN or w in _spoken_number_words() or w[-1:].isdigit() for w in user
    ):
        return None
    return first.start(), end


def _place_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    """Capitalised place words and the region after a comma: "Springfield, Illinois", "New York City"."""
    last = None
    after_comma = False
    for match in _WORD_RE.finditer(text, start, end):
        word = match.group()
        gap = text[last.end() : match.start()] if last else ""
        if last and word.lower() in NAME_PARTICLES and "," not in gap:
            continue  # "Newcastle upon Tyne"
        if "." in gap and last.group().lower() not in ("st", "mt", "ft"):
            break  # a sentence ends; "St. Albans" goes on
        if "," in gap:
            if after_comma:
                break  # one region: "Springfield, Illinois", not a list
            after_comma = True
        placeish = word[:1].isupper() and word.lower() in PLACE_WORDS
        if not (placeish or _is_name(word, "cased")):
            break
        last = match
    return (start, last.end()) if last else None


def _repeated_names(text: str, names: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Where a name found once is said again: "I'm Sarah ... Sarah's arm"."""
    found = []
    words = {
        m.group().removesuffix("'s").removesuffix("’s")
        for s, e in names
        for m in _WORD_RE.finditer(text, s, e)
    }
    for word in words:
        if len(word) < 2 or word.lower() in _function_words():
            continue
        flags = 0 if word.lower() in NAMES_THAT_ARE_WORDS else regex.IGNORECASE  # "Will", not "will"
        for match in regex.finditer(rf"\b{regex.escape(word)}\b", text, flags):
            if not any(s <= match.start() < e for s, e in names):
                found.append(match.span())
    return found


@lru_cache(maxsize=1)
def _compiled() -> list[tuple[Rule, Any]]:
    return [(rule, regex.compile(rule.regex, regex.IGNORECASE)) for rule in SPOKEN]


def _spoken_pii(text: str) -> list[tuple[str, int, int, float]]:
    """(entity, start, end, score) for what the ``SPOKEN`` rules find in ``text``."""
    found: list[tuple[str, int, int, float]] = []
    for rule, pattern in _compiled():
        for match in pattern.finditer(text):
            start, end = match.span("pii") if "pii" in pattern.groupindex else match.span()
            if rule.words in ("name", "maybe", "cased"):
                span = _name_span(text, start, end, rule.words)
            elif rule.words == "address":
                span = _address_span(text, start, end)
            elif rule.words == "id":
                span = _id_span(text, start, end)
            elif rule.words == "email":
                span = _email_span(text, start, end)
            elif rule.words == "place":
                span = _place_span(text, start, end)
            else:
                span = (start, end)
            if span and span[0] < span[1]:
                found.append((rule.entity, *span, rule.score))
    names = [(s, e) for entity, s, e, _ in found if entity == "PERSON"]
    found += [("PERSON", s, e, 0.7) for s, e in _repeated_names(text, names)]
    return found


# --- Presidio -----------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _engines() -> tuple[Any, Any]:
    import spacy
    import tldextract
    from presidio_analyzer import AnalyzerEngine, EntityRecognizer, RecognizerRegistry, RecognizerResult
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

    class SpokenRecognizer(EntityRecognizer):
        """The ``SPOKEN`` rules as a Presidio recognizer."""

        def load(self) -> None:
            _compiled()
            _not_names()

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            return [
                RecognizerResult(entity, start, end, score)
                for entity, start, end, score in _spoken_pii(text)
                if not entities or entity in entities
            ]

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
        SpokenRecognizer(supported_entities=sorted({rule.entity for rule in SPOKEN})),
    ):
        registry.add_recognizer(recognizer)
    analyzer = AnalyzerEngine(nlp_engine=nlp_engine, registry=registry, supported_languages=["en"])
    return analyzer, AnonymizerEngine()


def find_pii(text: str) -> list[tuple[str, int, int]]:
    """(entity, start, end) for every piece of personal data in ``text``."""
    analyzer, _ = _engines()
    results = analyzer.analyze(text=text, language="en", score_threshold=0.3)
    return [(r.entity_type, r.start, r.end) for r in results]


def redact(text: str) -> str:
    """``text`` with personal data replaced by typed placeholders (``<NAME>``, ``<PHONE>`` ...).

    Raises whatever the analyzer raised (a text over spaCy's length limit, a broken engine): each
    caller fails safe its own way. Each failure is counted (``redaction_failures_total``).
    """
    if not text or not text.strip():
        return text
    try:
        return _redact(text)
    except Exception:
        REDACTION_FAILURES_TOTAL.inc()
        raise


def _redact(text: str) -> str:
    from presidio_anonymizer.entities import OperatorConfig

    analyzer, anonymizer = _engines()
    results = analyzer.analyze(text=text, language="en", score_threshold=0.3)
    results = [r for r in results if not _this_machine(r.entity_type, text[r.start : r.end])]
    if not results:
        return text
    operators = {
        entity: OperatorConfig("replace", {"new_value": placeholder})
        for entity, placeholder in PLACEHOLDERS.items()
    }
    operators["DEFAULT"] = OperatorConfig("replace", {"new_value": "<PERSONAL_DATA>"})
    return anonymizer.anonymize(text=text, analyzer_results=results, operators=operators).text


def _this_machine(entity_type: str, found: str) -> bool:
    """A loopback or "any" address is this machine's, nobody's personal data: a log line keeps
    the address the server listens on, while a caller's address is still redacted."""
    if entity_type != "IP_ADDRESS":
        return False
    try:
        address = ipaddress.ip_address(found.strip("[]"))
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def warm_up() -> None:
    """Build the engines before the first patient speaks (about a second)."""
    redact("My name is Test Person, call me on 555 123 4567.")
