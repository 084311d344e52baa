"""The turn-taking benchmark's patient turns: what the patient says, where they pause, and when.

A real intake is mostly turns of 3-8 s, some short answers (1-3 s) and some long stories
(8-15 s). Many of them have pauses inside: a hesitation mid-sentence ("it's on my ... left
forearm"), a list said item by item ("itchy, ... red, ... and a bit sore"), a filler ("um ...").
An end-of-turn detector that answers during such a pause cuts the patient off; the benchmark
needs turns where the true end of the turn is known to the sample.

So each turn is scripted as fragments and the silences between them. ``assemble`` joins the
fragments' audio (each trimmed to its speech) with exact digital silence, and keeps the sample
positions of every inner pause and of the true end of the turn. ``synthesize_turn`` speaks the
fragments with the offline Piper voice (``media.synth``) at run time.

Some turns start while the agent is still answering (``barge_in_after_s``): the patient talks
over the agent, which must stop.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from media.audio_files import read_mono_int16, speech_bounds
from media.file_transport import PatientTurnAudio
from media.synth import synthesize

LEAD_S = 0.2  # silence before the patient's first word
TAIL_S = 0.3  # silence after the true end of the turn
CHARS_PER_S = 18.0  # the Piper voice's pace, trimmed to speech (measured; plans lengths without the model)


class LengthClass(StrEnum):
    """How long a turn is, in the classes of an intake."""

    SHORT = "short"  # 1-3 s
    MEDIUM = "medium"  # 3-8 s
    LONG = "long"  # 8-15 s


LENGTH_RANGES_S: dict[LengthClass, tuple[float, float]] = {
    LengthClass.SHORT: (1.0, 3.0),
    LengthClass.MEDIUM: (3.0, 8.0),
    LengthClass.LONG: (8.0, 15.0),
}
# The proportions of a real intake: most turns are 3-8 s.
INTAKE_PROPORTIONS: dict[LengthClass, float] = {
    LengthClass.SHORT: 0.2,
    LengthClass.MEDIUM: 0.6,
    LengthClass.LONG: 0.2,
}


class PauseKind(StrEnum):
    """Why the patient pauses inside the turn (``CLEAN``: they do not)."""

    CLEAN = "clean"
    HESITATION = "hesitation"
    LIST = "list"
    FILLER = "filler"


MIN_PAUSE_S, MAX_PAUSE_S = 0.3, 1.0  # the hesitations the benchmark holds the agent to


@dataclass(frozen=True)
class TurnScript:
    """One patient turn as said: fragments, the silence between each two, and when it starts."""

    length: LengthClass
    kind: PauseKind
    fragments: tuple[str, ...]
    pauses_s: tuple[float, ...] = ()  # one fewer than fragments
    # None: said once the agent's reply has finished. A number: said that many seconds after the
    # agent starts its reply (the patient talks over the agent).
    barge_in_after_s: float | None = None

    def __post_init__(self) -> None:
        if len(self.pauses_s) != len(self.fragments) - 1:
            raise ValueError("a turn needs one pause between each two fragments")

    def estimated_s(self) -> float:
        """The turn's speech length planned from its text (the voice's measured pace), pauses included."""
        spoken = sum(len(f) / CHARS_PER_S for f in self.fragments)
        return spoken + sum(self.pauses_s)


def _turn(
    length: LengthClass,
    kind: PauseKind,
    *parts: str | float,
    barge_in_after_s: float | None = None,
) -> TurnScript:
    """``_turn(MEDIUM, HESITATION, "It's on my", 0.8, "left forearm.")``: text, pause, text..."""
    fragments = tuple(p for p in parts if isinstance(p, str))
    pauses = tuple(float(p) for p in parts if not isinstance(p, str))
    return TurnScript(length, kind, fragments, pauses, barge_in_after_s)


S, M, L = LengthClass.SHORT, LengthClass.MEDIUM, LengthClass.LONG
CLEAN, HES, LIST, FILL = PauseKind.CLEAN, PauseKind.HESITATION, PauseKind.LIST, PauseKind.FILLER

# In the order played: any ten consecutive turns from the start keep the intake's proportions
# (2 short, 6 medium, 2 long) and mix paused, clean and barge-in turns.
# fmt: off
INTAKE: tuple[TurnScript, ...] = (
    _turn(M, HES, "It's on my", 0.8, "left forearm, just below the elbow."),
    _turn(S, CLEAN, "It started two weeks ago.", barge_in_after_s=0.6),
    _turn(M, LIST, "It is itchy,", 0.5, "red,", 0.7, "and a bit sore when I touch it."),
    _turn(
        L, LIST,
        "It began as a small dry patch on my elbow,", 0.6, "and then, um,", 0.8,
        "it spread down to my forearm.", 0.5, "Now it is itchy,", 0.4, "flaky,", 0.7,
        "and a bit sore when I scratch it.",
    ),
    _turn(
        M, CLEAN, "I have a red itchy rash on my left forearm. It started about two weeks ago.",
        barge_in_after_s=1.0,
    ),
    _turn(S, FILL, "Um,", 0.5, "about two weeks."),
    _turn(M, FILL, "I tried, um,", 0.9, "some moisturiser, but it did not really help."),
    _turn(
        M, CLEAN, "It itches a lot, especially at night, and it gets worse after I shower.",
        barge_in_after_s=0.8,
    ),
    _turn(
        L, CLEAN,
        "I have had eczema since I was a child, and it usually comes back in the winter. "
        "This time it looks different, and the cream I normally use has not helped at all, "
        "even after a whole week.",
    ),
    _turn(M, HES, "The patch is slightly raised and", 1.0, "rough to the touch."),
    _turn(S, CLEAN, "No, it does not hurt."),
    _turn(M, LIST, "I use a soap,", 0.4, "a body lotion,", 0.6, "and sometimes a sun cream."),
    _turn(
        M, CLEAN, "I work as a gardener, so I touch a lot of plants and soil every single day.",
        barge_in_after_s=0.7,
    ),
    _turn(
        L, HES,
        "Nobody else at home has it, and I have not changed my", 0.9,
        "washing powder or my soap recently, so I am really not sure what", 0.6,
        "could have started it.",
    ),
    _turn(S, HES, "On my", 0.6, "left arm."),
    _turn(M, FILL, "Well, um,", 0.3, "I think it has spread a little bit since the end of last week."),
    _turn(M, CLEAN, "The colour is pink, not dark, and I have not noticed any blisters."),
    _turn(M, HES, "It gets worse when I", 0.7, "wear a wool jumper or a tight shirt."),
    _turn(M, CLEAN, "I am thirty four, and I have no other skin problems that I know of."),
    _turn(S, FILL, "Um,", 0.4, "no, nothing else."),
)
# fmt: on


def intake(turns: int) -> list[TurnScript]:
    """The first ``turns`` turns of the scripted intake (it repeats past its end)."""
    return [INTAKE[index % len(INTAKE)] for index in range(turns)]


@dataclass(frozen=True)
class ScriptedTurn:
    """A turn's audio with the exact sample positions of its speech, its pauses and its true end."""

    script: TurnScript
    samples: np.ndarray  # int16 mono at ``rate``
    rate: int
    speech_start: int  # the first sample of the first fragment
    speech_end: int  # one past the last sample of the last fragment: the true end of the turn
    pauses: tuple[tuple[int, int], ...]  # each inner pause, [start, end) in samples

    @property
    def speech_s(self) -> float:
        """Seconds from the first word to the true end, pauses included."""
        return (self.speech_end - self.speech_start) / self.rate

    def patient_turn(self) -> PatientTurnAudio:
        """The turn as the replay transport plays it."""
        return PatientTurnAudio(
            self.samples,
            self.speech_start / self.rate,
            self.speech_end / self.rate,
            barge_in_after_s=self.script.barge_in_after_s,
        )


def trim_to_speech(samples: np.ndarray, rate: int) -> np.ndarray:
    """A fragment without the silence the voice leaves around it, so that pauses are exact."""
    start_s, end_s = speech_bounds(samples, rate)
    if end_s <= start_s:
        raise ValueError("a fragment holds no speech")
    return samples[int(round(start_s * rate)) : int(round(end_s * rate))]


def assemble(
    script: TurnScript,
    fragments: list[np.ndarray],
    rate: int,
    *,
    lead_s: float = LEAD_S,
    tail_s: float = TAIL_S,
) -> ScriptedTurn:
    """Join the fragments' speech (already trimmed) with the script's pauses, as exact silence."""
    if len(fragments) != len(script.fragments):
        raise ValueError("one audio fragment per scripted fragment")
    pieces = [np.zeros(int(round(lead_s * rate)), dtype=np.int16)]
    position = pieces[0].size
    speech_start = position
    pauses = []
    for index, fragment in enumerate(fragments):
        pieces.append(fragment.astype(np.int16))
        position += fragment.size
        if index < len(script.pauses_s):
            gap = int(round(script.pauses_s[index] * rate))
            pauses.append((position, position + gap))
            pieces.append(np.zeros(gap, dtype=np.int16))
            position += gap
    speech_end = position
    pieces.append(np.zeros(int(round(tail_s * rate)), dtype=np.int16))
    return ScriptedTurn(script, np.concatenate(pieces), rate, speech_start, speech_end, tuple(pauses))


def synthesize_turn(script: TurnScript, rate: int, folder: Path | None = None) -> ScriptedTurn:
    """Speak each fragment with the offline Piper voice and join them (``assemble``)."""
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        fragments = []
        for index, text in enumerate(script.fragments):
            wav = synthesize(text, Path(scratch) / f"fragment{index}.wav")
            fragments.append(trim_to_speech(read_mono_int16(wav, rate), rate))
    return assemble(script, fragments, rate)


def length_class(seconds: float) -> LengthClass | None:
    """The intake class a turn of ``seconds`` falls in (None: outside 1-15 s)."""
    for length, (low, high) in LENGTH_RANGES_S.items():
        if low <= seconds < high or (length == LengthClass.LONG and seconds == high):
            return length
    return None
