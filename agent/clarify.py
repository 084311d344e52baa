"""Asking when unsure: the agent never carries on as if it had heard.

Whisper scores its own transcripts. A turn it was unsure of that touches anything clinical gets
a short confirmation before the interview goes on ("I want to be sure I heard you: did you
mention a rash and a fever?"), so that a patient who was misheard can say it again. A turn that
could not be understood at all gets "could you say that again?"; a second one in a row gets the
offer of a clinician, and a yes to that offer is a request for one; a third escalates: a
patient we cannot understand is handed to a person, never left talking to a machine that
pretends to follow.

Red flags are never held back for a confirmation: a plausible red flag escalates at once
(``pipeline/triage.py``); these questions are for everything short of that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from agent.facts import ClinicalFacts, Presence, findings_catalogue

# Whisper's mean token log-probability: below UNSURE it is guessing at some words; below
# UNCLEAR the transcript is not worth acting on. Checked on the heard evaluation
# (python -m tools.evaluate --heard): clean Piper speech scores about -0.2 to -0.4.
UNSURE_AVG_LOGPROB = -0.8
UNCLEAR_AVG_LOGPROB = -1.3
# Categories whose findings make an unsure turn worth confirming.
CLINICAL_CATEGORIES = ("lesion", "change", "symptom", "systemic", "person", "site")
YES = re.compile(
    r"^\W*(yes|yeah|yep|yup|ya|aye|please|ok|okay|sure|alright|all right|go ahead|do that)\b", re.I
)


class AskKind(StrEnum):
    CONFIRM = "confirm"  # unsure of a clinical turn: did you say ...?
    REPEAT = "repeat"  # could not understand: say it again
    OFFER_CLINICIAN = "offer_clinician"  # could not understand twice: a clinician?


@dataclass(frozen=True)
class Ask:
    kind: AskKind
    text: str


def confirmation(facts_of_turn: ClinicalFacts) -> Ask | None:
    """ "Did you mention ...?" for the clinical findings of an unsure turn, or None when it has none."""
    catalogue = findings_catalogue()
    labels = [
        catalogue[fid].label
        for fid, state in facts_of_turn.findings.items()
        if state == Presence.PRESENT and fid in catalogue and catalogue[fid].category in CLINICAL_CATEGORIES
    ]
    if not labels:
        return None
    heard = labels[0] if len(labels) == 1 else ", ".join(labels[:3][:-1]) + " and " + labels[:3][-1]
    return Ask(
        AskKind.CONFIRM,
        f"I want to be sure I heard you right. Did you say something about {heard}? "
        "If I got it wrong, please tell me again.",
    )


REPEAT_ASK = Ask(AskKind.REPEAT, "I'm sorry, I didn't catch that. Could you say that again?")
OFFER_ASK = Ask(
    AskKind.OFFER_CLINICIAN,
    "I'm sorry, I'm having trouble hearing you clearly. Would you like me to connect you with a "
    "clinician? Just say yes.",
)


@dataclass
class Understanding:
    """How well the agent has been understanding this patient, turn by turn (one per session)."""

    unclear_in_a_row: int = 0
    offered_clinician: bool = False

    def unclear(self) -> Ask | None:
        """A turn that could not be understood: ask again, offer a clinician, or None to escalate."""
        self.unclear_in_a_row += 1
        if self.unclear_in_a_row == 1:
            return REPEAT_ASK
        if self.unclear_in_a_row == 2:
            self.offered_clinician = True
            return OFFER_ASK
        return None

    def understood(self, text: str) -> bool:
        """A clear turn; True when it accepts the clinician the agent offered."""
        accepted = self.offered_clinician and bool(YES.search(text))
        self.unclear_in_a_row = 0
        self.offered_clinician = False
        return accepted
