"""Turn-taking benchmark: does the agent wait for the patient to finish, answer fast, and stop when
talked over? Ours at its settings, a sweep of the end-of-turn settings, and stock pipecat.

    python -m tools.turns --json                    # defaults, the sweep, the baseline (~10 min)
    python -m tools.turns --turns 3 --no-sweep --json

Patient turns (``tools/turn_scripts.py``) are spoken by the offline Piper voice at run time,
fragment by fragment, and joined with silences of known length: hesitations mid-sentence, lists
said item by item, fillers, and turns that end cleanly; 1-15 s long in an intake's proportions;
some said while the agent is still answering. Every pause's position and the true end of each
turn are known to the sample. Each turn is played in real time through one session
(``tools.bench_paths.replay_session``), ours and the baseline (``tools/baseline.py``: Silero VAD
and Smart Turn v3 with pipecat's default turn strategies).

Figures, per run:

* ``false_cutoff_rate``: the fraction of turns where the agent starts a reply, audible or not,
  before the patient's turn is over. The earliest sign of a reply is read off the session's
  frames: the turn declared over (``UserStoppedSpeakingFrame``; the baseline's ``LLMContextFrame``),
  the brain starting (``LLMFullResponseStartFrame``), the voice starting (``TTSStartedFrame``,
  ``BotStartedSpeakingFrame``), whichever comes first after the session heard the turn begin
  (``UserStartedSpeakingFrame``) and before the turn's true end. A reply to a draft turn
  (preemptive generation: written and synthesised unheard while the end of turn is undecided)
  counts from its start if the draft is kept; a draft the patient's next words drop was never a
  reply the patient could hear or that the agent committed to, and counts as a dropped draft.
* ``p50_ms`` / ``p95_ms``: voice-to-voice latency at true turn ends: the end of the patient's
  speech to the agent's first audio at the transport (as ``tools.bench`` measures it).
* ``barge_in_stop_p95_ms``: for turns said over the agent, the patient's speech onset to the end
  of the last agent audio the transport played.

Output: human lines on stderr; with ``--json`` one JSON object, last line on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from pipecat.frames.frames import (
    BotStartedSpeakingFrame,
    Frame,
    LLMContextFrame,
    LLMFullResponseStartFrame,
    TTSStartedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.observers.base_observer import BaseObserver, FramePushed

from agent.redacted_logs import setup_redacted_logging
from configs.settings import Settings, hub_offline_environment, load_settings
from media.file_transport import ReplayTimeline
from pipeline.frames import PreemptiveTurnFrame, PreemptiveTurnSettledFrame
from pipeline.session import INPUT_RATE
from tools.bench_paths import bench_setup, latency_summary, machine, replay_session
from tools.turn_scripts import ScriptedTurn, TurnScript, intake, length_class, synthesize_turn
from web.product import Product, build_product

# The end-of-turn settings swept (complete_stop_s, turn_stop_s), from the defaults towards patience.
# Since the words of the turn so far hold the short silence back when they stop on an open word
# (pipeline/unfinished_words.py), the long silence (turn_stop_s) is what a hesitation the words do
# not show must fit in: the sweep raises it towards the 1.0 s pauses of the scripts, and the short
# one a little. Measured on two cores, a session of ten turns takes about three minutes (the
# agent's greeting and replies are played in full); quicker settings (0.2 / 0.8 s) cut off as many
# turns as 0.35 / 1.0 did before the words were read. Three points and eight turns: four sessions
# with the baseline's, about ten minutes.
# Each point also says whether the turn is answered preemptively (a draft while the silence lasts);
# the defaults without it show what preemptive generation gains, side by side.
SWEEP: tuple[tuple[float, float, bool], ...] = ((0.35, 1.0, True), (0.5, 1.2, False), (0.5, 1.5, True))
TARGETS = {"false_cutoff_rate_max": 0.05, "p95_ms_max": 800, "barge_in_stop_p95_ms_max": 250}
DEFAULT_TURNS = 8  # 2 short, 5 medium, 1 long; --turns 10 for the intake's 2 / 6 / 2
TALKING_BEFORE_ONSET_S = 0.25  # agent audio this close before the patient's onset: it was speaking
CONTINUED_S = 0.1  # agent audio this close to the previous piece is the same stretch of speech
NS = 1_000_000_000


class SignalKind(StrEnum):
    """A frame the session pushed that says where it is in the turn."""

    TURN_STARTED = "turn_started"  # the session heard the patient begin
    TURN_ENDED = "turn_ended"  # the session declared the turn over
    CONTEXT = "context"  # the baseline's aggregator handed the turn to the brain
    REPLY_STARTED = "reply_started"  # the brain began a reply
    TTS_STARTED = "tts_started"  # the voice began synthesising
    BOT_STARTED = "bot_started"  # the agent's audio began


REPLY_SIGNALS = frozenset(SignalKind) - {SignalKind.TURN_STARTED}
WATCHED: dict[type[Frame], SignalKind] = {
    UserStartedSpeakingFrame: SignalKind.TURN_STARTED,
    UserStoppedSpeakingFrame: SignalKind.TURN_ENDED,
    LLMContextFrame: SignalKind.CONTEXT,
    LLMFullResponseStartFrame: SignalKind.REPLY_STARTED,
    TTSStartedFrame: SignalKind.TTS_STARTED,
    BotStartedSpeakingFrame: SignalKind.BOT_STARTED,
}


@dataclass(frozen=True)
class Signal:
    kind: SignalKind
    at_s: float  # session seconds (the replay timeline's clock)


class TurnSignalObserver(BaseObserver):
    """Records when the session pushed each turn-taking frame, on the pipeline's clock.

    Observers are told through a queue, so the time a frame was pushed is its ``FramePushed``
    timestamp (the pipeline clock), mapped to the monotonic clock by the smallest offset seen.
    """

    def __init__(self) -> None:
        super().__init__(observe_every_push=False)
        self._recent: deque[int] = deque(maxlen=64)  # one copy of each broadcast pair
        self._pushed: list[tuple[SignalKind, int]] = []
        self._origin_ns: int | None = None  # the pipeline clock's zero, on time.monotonic_ns()
        self._draft_signals: list[tuple[SignalKind, int]] | None = None  # of a draft not yet settled
        self.drafts_dropped = 0

    async def on_push_frame(self, data: FramePushed) -> None:
        if isinstance(data.frame, PreemptiveTurnFrame) and data.frame.id not in self._recent:
            self._recent.append(data.frame.id)
            self._draft_signals = []
            return
        if isinstance(data.frame, PreemptiveTurnSettledFrame) and data.frame.id not in self._recent:
            self._recent.append(data.frame.id)
            self._settle_draft(kept=data.frame.kept)
            return
        kind = WATCHED.get(type(data.frame))
        if kind is None:
            return
        sibling = getattr(data.frame, "broadcast_sibling_id", None)
        if sibling is not None and sibling in self._recent:
            return
        self._recent.append(data.frame.id)
        offset = time.monotonic_ns() - data.timestamp
        self._origin_ns = offset if self._origin_ns is None else min(self._origin_ns, offset)
        if self._draft_signals is not None and kind in (SignalKind.REPLY_STARTED, SignalKind.TTS_STARTED):
            self._draft_signals.append((kind, data.timestamp))  # the draft's reply: counts if kept
            return
        self._pushed.append((kind, data.timestamp))

    def _settle_draft(self, *, kept: bool) -> None:
        signals, self._draft_signals = self._draft_signals or [], None
        if kept:
            self._pushed.extend(signals)
            self._pushed.sort(key=lambda pushed: pushed[1])
        else:
            self.drafts_dropped += 1

    def signals(self, t0: float) -> list[Signal]:
        """What was pushed, in session seconds (``t0``: the timeline's zero, monotonic seconds)."""
        origin = self._origin_ns or 0
        return [Signal(kind, (origin + at) / NS - t0) for kind, at in self._pushed]


@dataclass(frozen=True)
class TurnOutcome:
    """What happened to one patient turn."""

    length_s: float
    paused: bool
    barge_in: bool
    cut_off_s: float | None  # how long before the true end the agent started a reply (None: it did not)
    latency_ms: float | None  # true end to the agent's first audio (None: no reply)
    barge_in_stop_ms: float | None  # onset over the agent to its audio stopping (None: not measured)


def reply_before_end(signals: Sequence[Signal], onset_s: float, end_s: float) -> float | None:
    """When the session first showed a reply to this turn before its true end (None: it did not).

    Only frames after the session heard this turn begin count: before that, what the agent does
    belongs to its previous reply (a patient talking over it). A session that never heard the
    turn begin cannot have ended it early.
    """
    started = [s.at_s for s in signals if s.kind == SignalKind.TURN_STARTED and onset_s <= s.at_s < end_s]
    if not started:
        return None
    early = [s.at_s for s in signals if s.kind in REPLY_SIGNALS and started[0] < s.at_s < end_s]
    return min(early, default=None)


def _pieces(timeline: ReplayTimeline) -> list[tuple[float, float]]:
    rate = timeline.agent_rate or INPUT_RATE
    return sorted((at, at + piece.size / rate) for at, piece in timeline.agent_audio)


def first_audio_after(pieces: Sequence[tuple[float, float]], end_s: float, before_s: float) -> float | None:
    """When the agent's first new stretch of speech began after ``end_s`` (before ``before_s``).

    Audio that goes on from a stretch begun before ``end_s`` (a reply the patient is still
    interrupting) is not a reply to the finished turn.
    """
    reach: float | None = None  # the end of the stretch of speech under way
    for start, stop in pieces:
        if start >= before_s:
            break
        continuing = reach is not None and start <= reach + CONTINUED_S
        if start < end_s or continuing:
            reach = max(reach, stop) if continuing and reach is not None else stop
            continue
        return start
    return None


def barge_in_stop(pieces: Sequence[tuple[float, float]], onset_s: float, end_s: float) -> float | None:
    """Seconds from the patient's onset to the end of the agent audio played over them.

    None when the agent was not speaking at the onset (its reply was over: no barge-in).
    """
    if not any(start <= onset_s and stop >= onset_s - TALKING_BEFORE_ONSET_S for start, stop in pieces):
        return None
    over = [stop for start, stop in pieces if start < end_s and stop > onset_s]
    return max(0.0, max(over, default=onset_s) - onset_s)


def outcomes(
    timeline: ReplayTimeline, scripted: Sequence[ScriptedTurn], signals: Sequence[Signal]
) -> list[TurnOutcome]:
    """Each played turn's cut-off, latency and barge-in stop, from its true times."""
    pieces = _pieces(timeline)
    starts = timeline.turn_audio_starts_s
    results = []
    for index, (turn, started_s) in enumerate(zip(scripted, starts, strict=False)):
        onset = started_s + turn.speech_start / turn.rate
        end = started_s + turn.speech_end / turn.rate
        following = starts[index + 1] if index + 1 < len(starts) else float("inf")
        early = reply_before_end(signals, onset, end)
        reply = first_audio_after(pieces, end, following)
        stop = barge_in_stop(pieces, onset, end) if turn.script.barge_in_after_s is not None else None
        results.append(
            TurnOutcome(
                length_s=round(turn.speech_s, 2),
                paused=bool(turn.pauses),
                barge_in=turn.script.barge_in_after_s is not None,
                cut_off_s=None if early is None else round(end - early, 3),
                latency_ms=None if reply is None else round((reply - end) * 1000, 1),
                barge_in_stop_ms=None if stop is None else round(stop * 1000, 1),
            )
        )
    return results


def figures(results: Sequence[TurnOutcome], started: float, drafts_dropped: int = 0) -> dict[str, Any]:
    """One run's figures as the JSON gives them (None where nothing was measured)."""
    latencies = [r.latency_ms for r in results if r.latency_ms is not None]
    summary = latency_summary(len(results), latencies, started)
    stops = [r.barge_in_stop_ms for r in results if r.barge_in_stop_ms is not None]
    cut = sum(r.cut_off_s is not None for r in results)
    return {
        "false_cutoff_rate": round(cut / len(results), 3) if results else None,
        "p50_ms": summary["p50_ms"],
        "p95_ms": summary["p95_ms"],
        "barge_in_stop_p95_ms": round(float(np.percentile(stops, 95)), 1) if stops else None,
        "turns": len(results),
        "drafts_dropped": drafts_dropped,  # replies to draft turns the patient's next words dropped
    }


async def measure(
    name: str, product: Product, scripted: Sequence[ScriptedTurn]
) -> tuple[list[TurnOutcome], int]:
    """Play the scripted turns through one session (``pipeline`` or ``baseline``) and judge each;
    with the number of draft replies dropped."""
    observer = TurnSignalObserver()
    turns = [turn.patient_turn() for turn in scripted]
    timeline = await replay_session(name, product, turns, [observer], session_id=f"turns-{name}")
    if len(timeline.turn_audio_starts_s) < len(scripted):
        say(f"  {name}: only {len(timeline.turn_audio_starts_s)} of {len(scripted)} turns were played")
    return outcomes(timeline, scripted, observer.signals(timeline.t0)), observer.drafts_dropped


def voice_settings(settings: Settings) -> dict[str, float | bool]:
    return {
        "complete_stop_s": settings.voice.complete_stop_s,
        "turn_stop_s": settings.voice.turn_stop_s,
        "preemptive_generation": settings.voice.preemptive_generation,
    }


def tuned_product(complete_stop_s: float, turn_stop_s: float, preemptive: bool) -> Product:
    """The product as an operator would run it with these end-of-turn settings."""
    voice = {
        "complete_stop_s": complete_stop_s,
        "turn_stop_s": turn_stop_s,
        "preemptive_generation": preemptive,
    }
    return build_product(load_settings(voice=voice), phone=False)


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def describe(label: str, results: Sequence[TurnOutcome], figs: dict[str, Any]) -> None:
    paused = [r for r in results if r.paused]
    cut_paused = sum(r.cut_off_s is not None for r in paused)
    missed = sum(r.barge_in and r.barge_in_stop_ms is None for r in results)
    say(
        f"{label:28s} cut-offs {figs['false_cutoff_rate']} ({cut_paused}/{len(paused)} paused turns)  "
        f"p50 {figs['p50_ms']} ms  p95 {figs['p95_ms']} ms  "
        f"barge-in stop p95 {figs['barge_in_stop_p95_ms']} ms"
        + (f"  ({missed} barge-ins after the agent had finished)" if missed else "")
    )
    for index, r in enumerate(results):
        if r.cut_off_s is not None:
            say(f"    turn {index + 1} ({r.length_s} s) answered {r.cut_off_s} s before its end")


async def run_figures(
    label: str, name: str, product: Product, scripted: Sequence[ScriptedTurn]
) -> dict[str, Any]:
    started = time.monotonic()
    results, drafts_dropped = await measure(name, product, scripted)
    figs = figures(results, started, drafts_dropped)
    describe(label, results, figs)
    return figs


async def benchmark(turns: int, sweep: bool) -> dict[str, Any]:
    scripts: list[TurnScript] = intake(turns)
    async with bench_setup(0) as (product, _):
        scripted = [synthesize_turn(script, INPUT_RATE) for script in scripts]
        classes = [length_class(t.speech_s) for t in scripted]
        say(
            f"{len(scripted)} turns: "
            + ", ".join(f"{c.value} {classes.count(c)}" for c in dict.fromkeys(c for c in classes if c))
            + f"; {sum(bool(t.pauses) for t in scripted)} with pauses inside, "
            + f"{sum(t.script.barge_in_after_s is not None for t in scripted)} said over the agent"
        )
        chosen = voice_settings(product.settings)
        ours = await run_figures(f"ours {_label(*chosen.values())}", "pipeline", product, scripted)
        points = []
        for complete, stop, preemptive in SWEEP if sweep else ():
            if (complete, stop, preemptive) == tuple(chosen.values()):
                figs = ours
            else:
                tuned = tuned_product(complete, stop, preemptive)
                await tuned.warm_up()
                try:
                    label = f"sweep {_label(complete, stop, preemptive)}"
                    figs = await run_figures(label, "pipeline", tuned, scripted)
                finally:
                    await tuned.stop()
            point = {"complete_stop_s": complete, "turn_stop_s": stop, "preemptive_generation": preemptive}
            points.append({**point, **_keys(figs)})
        baseline = await run_figures("baseline (stock pipecat)", "baseline", product, scripted)
    return {
        "machine": machine(),
        **ours,
        "settings": chosen,
        "sweep": points,
        "baseline": baseline,
        "targets": TARGETS,
    }


def _keys(figs: dict[str, Any]) -> dict[str, Any]:
    keys = ("false_cutoff_rate", "p50_ms", "p95_ms", "barge_in_stop_p95_ms", "drafts_dropped")
    return {key: figs[key] for key in keys}


def _label(complete_stop_s: float, turn_stop_s: float, preemptive: bool) -> str:
    return f"{complete_stop_s}/{turn_stop_s} s{' preemptive' if preemptive else ''}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.turns", description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=DEFAULT_TURNS, help="patient turns per run")
    parser.add_argument(
        "--sweep",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also sweep the end-of-turn settings",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object, last line on stdout")
    parser.add_argument("--log-level", default="WARNING", help="what reaches stderr while it runs")
    args = parser.parse_args(argv)
    if args.turns < 1:
        parser.error("--turns must be at least 1")
    hub_offline_environment()
    setup_redacted_logging(args.log_level, "text")
    say(f"machine: {machine()}; load average {os.getloadavg()[0]:.2f} at start")
    report = asyncio.run(benchmark(args.turns, args.sweep))
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
