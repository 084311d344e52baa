"""Whether the words of a turn so far stop mid-thought, so that a pause after them is not its end.

Smart Turn listens to the audio's prosody, and it often hears a patient who pauses to find a
word as finished: "It's on my ... left forearm" was ended after "my" (measured with
``python -m tools.turns``: the agent cut into 7 of 10 turns). The words say what the prosody
misses: a phrase that ends on a word that cannot end an English sentence (a preposition, an
article, a possessive, a conjunction, a filler) or on a comma or a dash is unfinished. This is
the signal text-based end-of-turn models (LiveKit's turn detector) learn; a short list of
closed-class words captures most of it at no cost. It only ever makes the agent wait longer
(``turn_stop_s`` instead of ``complete_stop_s``), never answer sooner.
"""

from __future__ import annotations

import re

# Closed-class words that leave a sentence open when it stops on them.
# Closed-class words that leave a sentence open when it stops on them. Words that often end a
# finished answer ("I think so", "it is", "yes I do", "since then") are deliberately not here.
OPEN_ENDINGS = frozenset(
    """
    a an the my your his her our their
    and or but because if when while although than then
    of to in on with from at by for about into onto under near between like
    i i'm it's there's he's she's we're they're
    um uh er erm
    """.split()
)
_OPEN_PUNCTUATION = (",", ";", ":", "-", "\u2014", "...", "\u2026")
_WORD = re.compile(r"[a-z']+")


def sounds_unfinished(text: str) -> bool:
    """True when ``text`` stops where a sentence cannot end ("It's on my", "itchy,", "um")."""
    stripped = text.strip()
    if not stripped:
        return False
    if stripped.endswith(_OPEN_PUNCTUATION):
        return True
    words = _WORD.findall(stripped.lower().replace("\u2019", "'"))
    return bool(words) and words[-1] in OPEN_ENDINGS
