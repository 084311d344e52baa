"""A simulated patient for evaluations: says its own words, then answers the agent's questions.

A scenario's ``turns`` are what the patient volunteers, in order; its ``profile`` is how they
answer the intake questions (where, since when, what it feels like, ...). The simulator reads
each agent reply and answers it the way a cooperative patient would:

* a confirmation ("Did you say ...?") is answered by saying it again ("Yes, I said: ..."),
  as a patient does who may have been misheard;
* a request to repeat ("could you say that again?") gets the last thing said, word for word;
* an offer of a clinician gets a yes;
* otherwise the next volunteered turn, and once those are said, the profile's answer to the
  topic the agent asked about (each answer once); "I'm not sure" to a question it has no
  answer for; nothing more when the agent has nothing left to ask.

So that questions and confirmations are evaluated end to end, in text and in audio.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Which profile answer each kind of question asks for, first match wins (checked on the
# agent's words, lower case). Screening questions map onto the nearest intake topic.
TOPIC_CUES: tuple[tuple[str, str], ...] = (
    ("where on your body", "site"),
    ("how long", "duration"),
    ("since when", "duration"),
    ("how does your skin react to the sun", "skin_type"),
    ("tried", "tried"),
    ("describe", "look"),
    ("show me", "look"),
    ("camera", "look"),
    ("palm of your hand", "look"),
    ("changed", "change"),
    ("spreading", "change"),
    ("red line", "change"),
    ("fever", "systemic"),
    ("unwell", "systemic"),
    ("drowsy", "systemic"),
    ("breathing", "systemic"),
    ("shivery", "systemic"),
    ("itch", "symptoms"),
    ("hurt", "symptoms"),
    ("bleed", "symptoms"),
    ("pain", "symptoms"),
    ("what's the problem", "look"),
)
REPEAT = re.compile(
    r"say that again|could you repeat|didn't catch|did not catch|say it again|trouble hearing"
)
CONFIRM = re.compile(r"did you say|did you mean|to make sure i heard|did i hear")
OFFER = re.compile(r"would you like (me )?to (connect|speak|talk)|shall i connect")
NOT_SURE = "I'm not sure, sorry."
CONFIRMED = "Yes, I said: "


@dataclass
class SimulatedPatient:
    turns: tuple[str, ...]
    profile: dict[str, str] = field(default_factory=dict)
    max_answers: int = 6  # profile answers after the volunteered turns
    _said: list[str] = field(default_factory=list)
    _next_turn: int = 0
    _answered: set[str] = field(default_factory=set)

    def first(self) -> str | None:
        """The opening turn (after the greeting)."""
        return self.reply("")

    def reply(self, agent_said: str, *, escalated: bool = False) -> str | None:
        """What the patient says next, or None when the conversation is over for them.

        Once the agent has escalated, only what the patient still meant to say is said (the
        interview is over; the words still count for personal data and transcripts).
        """
        text = self._next_volunteered() if escalated else self._choose(agent_said.lower())
        if text is not None:
            self._said.append(text)
        return text

    def _choose(self, agent: str) -> str | None:
        if self._said and REPEAT.search(agent):
            return self._said[-1]
        if self._said and CONFIRM.search(agent):
            return CONFIRMED + self._said[-1].removeprefix(CONFIRMED)
        if OFFER.search(agent):
            return "Yes please."
        if self._next_turn < len(self.turns):
            return self._next_volunteered()
        if len(self._answered) >= self.max_answers or "?" not in agent:
            return None
        for cue, topic in TOPIC_CUES:
            if cue in agent and topic not in self._answered:
                self._answered.add(topic)
                return self.profile.get(topic) or NOT_SURE
        return None

    def _next_volunteered(self) -> str | None:
        if self._next_turn >= len(self.turns):
            return None
        self._next_turn += 1
        return self.turns[self._next_turn - 1]
