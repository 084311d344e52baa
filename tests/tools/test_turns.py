"""The turn-taking benchmark: its scripted patient turns, how it judges a cut-off, and real runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from configs.settings import Settings, VoiceSettings
from pipeline.session import INPUT_RATE
from tools.turn_scripts import (
    INTAKE,
    INTAKE_PROPORTIONS,
    LENGTH_RANGES_S,
    MAX_PAUSE_S,
    MIN_PAUSE_S,
    LengthClass,
    PauseKind,
    TurnScript,
    assemble,
    intake,
    length_class,
    synthesize_turn,
    trim_to_speech,
)
from tools.turns import (
    Signal,
    SignalKind,
    TurnOutcome,
    barge_in_stop,
    figures,
    first_audio_after,
    measure,
    reply_before_end,
)
from web.product import build_product

FIGURE_KEYS = {"false_cutoff_rate", "p50_ms", "p95_ms", "barge_in_stop_p95_ms"}
RATE = 16000


def noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(1000, 8000, int(seconds * RATE)).astype(np.int16)


# -- the scripted turns ------------------------------------------------------------------------


def test_every_pause_and_the_true_end_are_where_the_script_puts_them() -> None:
    script = TurnScript(
        LengthClass.MEDIUM, PauseKind.LIST, ("itchy,", "red,", "and a bit sore."), (0.5, 0.75)
    )
    fragments = [noise(0.4, 1), noise(0.3, 2), noise(0.9, 3)]
    turn = assemble(script, fragments, RATE, lead_s=0.2, tail_s=0.3)

    assert turn.speech_start == int(0.2 * RATE)
    first_pause = (turn.speech_start + 6400, turn.speech_start + 6400 + 8000)
    second_pause = (first_pause[1] + 4800, first_pause[1] + 4800 + 12000)
    assert turn.pauses == (first_pause, second_pause)
    assert turn.speech_end == second_pause[1] + fragments[2].size  # the true end: the last word's end
    for start, end in turn.pauses:
        assert not turn.samples[start:end].any()  # the patient is silent in a pause, to the sample
        assert turn.samples[start - 1] != 0 and turn.samples[end] != 0  # and speaks either side
    assert not turn.samples[turn.speech_end :].any() and turn.samples.size == turn.speech_end + 4800
    assert turn.speech_s == pytest.approx(0.4 + 0.5 + 0.3 + 0.75 + 0.9)
    played = turn.patient_turn()
    assert (played.speech_start_s, played.speech_end_s) == (0.2, turn.speech_end / RATE)


def test_a_fragment_loses_the_silence_around_it_so_pauses_are_exact() -> None:
    fragment = np.concatenate([np.zeros(3200, np.int16), noise(0.5, 4), np.zeros(4800, np.int16)])
    speech = trim_to_speech(fragment, RATE)
    assert speech.size == 8000 and (speech != 0).all()
    with pytest.raises(ValueError):
        trim_to_speech(np.zeros(RATE, np.int16), RATE)


def test_the_intake_has_a_real_intakes_lengths_pauses_and_barge_ins() -> None:
    ten = intake(10)
    lengths = [turn.length for turn in ten]
    assert [lengths.count(c) for c in LengthClass] == [2, 6, 2]  # most turns are 3-8 s
    assert [lengths.count(c) / 10 for c in LengthClass] == [INTAKE_PROPORTIONS[c] for c in LengthClass]
    for turn in INTAKE:
        low, high = LENGTH_RANGES_S[turn.length]
        assert low <= turn.estimated_s() <= high, turn.fragments  # planned as long as its class
        assert length_class(turn.estimated_s()) == turn.length
        assert all(MIN_PAUSE_S <= pause <= MAX_PAUSE_S for pause in turn.pauses_s)
        assert (turn.kind == PauseKind.CLEAN) == (not turn.pauses_s)
    assert {turn.kind for turn in ten} == set(PauseKind)  # hesitations, lists, fillers, clean ends
    assert 0.4 <= sum(bool(turn.pauses_s) for turn in ten) / 10 <= 0.7
    assert ten[0].barge_in_after_s is None and sum(t.barge_in_after_s is not None for t in ten) == 3
    assert intake(3)[0].pauses_s and intake(3)[1].barge_in_after_s  # a short run has both kinds
    assert len(intake(25)) == 25 and intake(25)[20] == INTAKE[0]
    assert length_class(0.5) is None and length_class(15.0) == LengthClass.LONG
    assert length_class(3.0) == LengthClass.MEDIUM and length_class(16.0) is None


# -- judging a run -----------------------------------------------------------------------------


def signals(*pairs: tuple[SignalKind, float]) -> list[Signal]:
    return [Signal(kind, at) for kind, at in pairs]


def test_a_reply_begun_in_a_pause_is_a_cut_off_and_one_after_the_end_is_not() -> None:
    onset, end = 10.0, 14.0  # the patient pauses at 11.0-12.0
    in_pause = signals((SignalKind.TURN_STARTED, 10.2), (SignalKind.TURN_ENDED, 11.6))
    assert reply_before_end(in_pause, onset, end) == 11.6
    silent_brain = signals((SignalKind.TURN_STARTED, 10.2), (SignalKind.REPLY_STARTED, 11.7))
    assert reply_before_end(silent_brain, onset, end) == 11.7  # audible or not
    waited = signals((SignalKind.TURN_STARTED, 10.2), (SignalKind.TURN_ENDED, 14.5))
    assert reply_before_end(waited, onset, end) is None
    # Talked over: the agent's previous reply goes on until the session hears the patient.
    over = signals((SignalKind.BOT_STARTED, 10.05), (SignalKind.TURN_STARTED, 10.2))
    assert reply_before_end(over, onset, end) is None
    assert reply_before_end(signals((SignalKind.TURN_ENDED, 11.6)), onset, end) is None


def test_latency_counts_from_the_true_end_to_the_agents_next_stretch_of_speech() -> None:
    pieces = [(5.0, 5.5), (5.5, 6.0), (14.02, 14.1), (14.1, 14.3), (14.9, 15.5), (20.0, 21.0)]
    # The audio going on across the end belongs to a reply the patient interrupted.
    assert first_audio_after(pieces, 14.05, 20.0) == 14.9
    assert first_audio_after(pieces, 6.5, 20.0) == 14.02
    assert first_audio_after(pieces, 15.6, 20.0) is None  # nothing before the next turn


def test_barge_in_stop_runs_from_the_patients_onset_to_the_agents_last_sound() -> None:
    pieces = [(3.0 + i * 0.02, 3.02 + i * 0.02) for i in range(52)]  # the agent speaks 3.0-4.04 s
    assert barge_in_stop(pieces, 3.5, 5.0) == pytest.approx(0.54)  # the agent went on for 540 ms
    assert barge_in_stop(pieces, 4.5, 6.0) is None  # its reply was over: nothing to stop


def test_the_rate_counts_every_turn_and_the_figures_say_when_nothing_was_measured() -> None:
    results = [
        TurnOutcome(3.0, True, False, 1.2, 900.0, None),
        TurnOutcome(4.0, False, True, None, 700.0, 300.0),
        TurnOutcome(2.0, False, False, None, 800.0, None),
        TurnOutcome(5.0, True, False, None, None, None),
    ]
    figs = figures(results, time.monotonic())
    assert figs == {
        "false_cutoff_rate": 0.25,
        "p50_ms": 800.0,
        "p95_ms": pytest.approx(890.0),
        "barge_in_stop_p95_ms": 300.0,
        "turns": 4,
        "drafts_dropped": 0,
    }
    assert figures([], time.monotonic())["false_cutoff_rate"] is None


# -- real runs ---------------------------------------------------------------------------------


@pytest.mark.slow
async def test_a_one_second_pause_is_cut_off_by_a_hasty_setting_and_waited_out_by_a_patient_one(
    settings: Settings,
) -> None:
    """The metric can fail: the same turn, cut off at 0.2 s and heard out at 1.5 s of silence."""
    script = TurnScript(
        LengthClass.MEDIUM,
        PauseKind.HESITATION,
        ("The patch is slightly raised and", "rough to the touch."),
        (1.0,),
    )
    turn = synthesize_turn(script, INPUT_RATE)
    judged = {}
    for stop_s in (0.2, 1.5):
        voice = settings.voice.model_copy(update={"complete_stop_s": stop_s, "turn_stop_s": stop_s})
        product = build_product(settings.model_copy(update={"voice": voice}), phone=False)
        await product.warm_up()
        try:
            [judged[stop_s]], _drafts_dropped = await measure("pipeline", product, [turn])
        finally:
            await product.stop()
    hasty, patient = judged[0.2], judged[1.5]
    [(pause_start, pause_end)] = turn.pauses
    after_pause_s = (turn.speech_end - pause_end) / INPUT_RATE
    assert hasty.cut_off_s is not None  # answered in the pause, before the patient went on
    assert after_pause_s < hasty.cut_off_s <= (turn.speech_end - pause_start) / INPUT_RATE
    assert patient.cut_off_s is None
    assert patient.latency_ms is not None and 1000 < patient.latency_ms < 5000  # answered after it


@pytest.mark.slow
def test_the_benchmark_reports_ours_and_the_baseline_as_json() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "tools.turns", "--turns", "2", "--no-sweep", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(report) == FIGURE_KEYS | {
        "machine",
        "turns",
        "drafts_dropped",
        "settings",
        "sweep",
        "baseline",
        "targets",
    }
    assert isinstance(report["machine"], str) and report["machine"]
    defaults = VoiceSettings()  # the run is of the product's own end-of-turn settings
    assert report["settings"] == {
        "complete_stop_s": defaults.complete_stop_s,
        "turn_stop_s": defaults.turn_stop_s,
        "preemptive_generation": defaults.preemptive_generation,
    }
    assert report["sweep"] == []
    assert report["targets"] == {
        "false_cutoff_rate_max": 0.05,
        "p95_ms_max": 800,
        "barge_in_stop_p95_ms_max": 250,
    }
    for figures_of in (report, report["baseline"]):
        assert FIGURE_KEYS <= set(figures_of) and figures_of["turns"] == 2
        assert 0.0 <= figures_of["false_cutoff_rate"] <= 1.0
        assert 0 < figures_of["p50_ms"] <= figures_of["p95_ms"] < 5000  # both turns were answered
        assert 0 < figures_of["barge_in_stop_p95_ms"] < 3000  # the second turn talked over a reply
