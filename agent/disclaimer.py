"""When the agent says "this is information, not a diagnosis".

Every session's greeting carries the full disclaimer. After that, a turn that assesses,
names a possible condition or recommends care carries the short one, unless one was said in
the last ``every_turns`` agent turns: often enough to be true, rarely enough not to be noise.
A recommendation carries it unless the turn just before did.
"""

from __future__ import annotations

import re

FULL = (
    "I'm an automated assistant: I can give you information, not a diagnosis, "
    "and a clinician should examine anything that worries you."
)
SHORT = "Remember, this is information, not a diagnosis; a clinician should examine it."

CARRIES = re.compile(
    r"not a diagnosis|isn't a diagnosis|is not a diagnosis|cannot diagnose|can't diagnose", re.I
)
ASSESSES = re.compile(
    r"\b(could be|might be|may be|looks like|sounds like|consistent with|suggests?|likely|possibl[ey]|"
    r"probably|recommend|advise|should (?:see|book|get|have|call|contact)|appointment|see a (?:doctor|"
    r"clinician|gp|dermatologist|pharmacist)|self-care|pharmacist|urgent|emergency|eczema|psoriasis|"
    r"dermatitis|melanoma|cancer|carcinoma|infection|cellulitis|shingles|acne|rosacea|fungal|"
    r"ringworm|impetigo|hives|urticaria|scabies|wart|mole check)\b",
    re.I,
)
RECOMMENDS = re.compile(
    r"\b(recommend|advise|should (?:see|book|get|call|contact)|appointment|self-care)\b", re.I
)


class DisclaimerPolicy:
    """Decides, turn by turn, whether the agent's words need the disclaimer added."""

    def __init__(self, every_turns: int = 3) -> None:
        self._every_turns = every_turns
        self._turns = 0
        self._last_disclaimer_turn: int | None = None

    @staticmethod
    def carries_disclaimer(text: str) -> bool:
        return bool(CARRIES.search(text))

    def disclaimer_for(self, text: str) -> str:
        """The disclaimer to append to this agent turn ("" for none); call once per turn."""
        self._turns += 1
        if self.carries_disclaimer(text):
            self._last_disclaimer_turn = self._turns
            return ""
        if self._last_disclaimer_turn is None:  # the session's first words
            self._last_disclaimer_turn = self._turns
            return FULL
        since = self._turns - self._last_disclaimer_turn
        if ASSESSES.search(text) and (since >= self._every_turns or (RECOMMENDS.search(text) and since >= 2)):
            self._last_disclaimer_turn = self._turns
            return SHORT
        return ""
