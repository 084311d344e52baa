"""Replay, the contract of tests and evaluations: recorded patient turns in, result.json out.

The patient's speech is synthesised with the offline Piper voice; these tests run the whole
loop (VAD, incremental Whisper, triage, the mock brain, safety, Piper) in real time.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from configs.settings import Settings
from media.file_transport import FileReplayTransport
from pipeline.observers import TranscriptObserver
from pipeline.result import build_result
from pipeline.session import INPUT_RATE, SessionContext, make_worker, patient_session, run_worker, warm_up
from tools.replay import load_turns, main, run_replay

pytestmark = pytest.mark.slow


async def test_a_two_turn_conversation_is_transcribed_answered_and_recorded(
    speak: Callable[..., Path], tmp_path: Path, settings: Settings
) -> None:
    turns = [
        speak("I have a red itchy rash on my left forearm.", lead_s=0.3, tail_s=0.5),
        speak("It started about two weeks ago.", lead_s=0.3, tail_s=0.5),
    ]
    out = tmp_path / "out"
    result = await run_replay(turns, out, settings=settings)

    assert result == json.loads((out / "result.json").read_text())
    assert result["backend"] == "mock" and result["escalation"] is None
    roles = [t["role"] for t in result["turns"]]
    assert roles == ["agent", "patient", "agent", "patient", "agent"]
    greeting, heard1, answer1, heard2, answer2 = result["turns"]
    assert greeting["disclaimer"] and "not a diagnosis" in greeting["text"]
    assert "rash" in heard1["text"].lower() and "forearm" in heard1["text"].lower()
    assert "left forearm" in answer1["text"]  # the interviewer acknowledged what it heard
    assert "two weeks" in heard2["text"].lower() and "two weeks" in answer2["text"]
    assert all(t["end_s"] >= t["start_s"] for t in result["turns"])
    assert len(result["latency_ms"]) == 2 and all(0 < ms < 5000 for ms in result["latency_ms"])

    audio, rate = sf.read(out / "conversation.wav", dtype="int16")
    assert rate == INPUT_RATE and audio.shape[1] == 2
    assert np.abs(audio[:, 0]).max() > 1000 and np.abs(audio[:, 1]).max() > 1000  # patient left, agent right
    log = (out / "session.log").read_text()
    assert "replay session started" in log and "forearm" not in log  # ids and events, never words


async def test_a_red_flag_escalates_mid_conversation_without_leaking_the_name(
    speak: Callable[..., Path], tmp_path: Path, settings: Settings
) -> None:
    turn = speak(
        "My name is John Smith and the mole on my back has started bleeding.", lead_s=0.3, tail_s=0.5
    )
    out = tmp_path / "out"
    result = await run_replay([turn], out, settings=settings)

    escalation = result["escalation"]
    assert escalation["level"] == "urgent" and "mole" in escalation["reason"]
    patient = next(t for t in result["turns"] if t["role"] == "patient")
    assert escalation["at_s"] <= patient["end_s"] + 3.0  # escalated as the turn ended, not later
    agent_after = [t["text"] for t in result["turns"] if t["role"] == "agent"][1:]
    assert any("connecting you with a clinician" in text for text in agent_after)
    for written in (out / "result.json", out / "session.log", *settings.escalations_dir.glob("*.json")):
        assert "John" not in written.read_text() and "Smith" not in written.read_text()
    [record] = [json.loads(p.read_text()) for p in settings.escalations_dir.glob("*.json")]
    assert record["rule_ids"] == ["changing_mole"] and "<NAME>" in json.dumps(record["transcript"])


async def test_talking_over_the_agent_stops_it_at_once(
    speak: Callable[..., Path], settings: Settings
) -> None:
    warm_up(settings)  # as the server does at start: the first turn pays no loading costs
    [turn] = load_turns([speak("Sorry to interrupt, I have a rash on my arm.", tail_s=0.5)])
    turn.barge_in_after_s = 2.0  # two seconds into the greeting
    transport = FileReplayTransport([turn], input_rate=INPUT_RATE, output_rate=16000)
    transcript = TranscriptObserver()
    worker = make_worker(
        transport,
        patient_session(settings, _backend(settings), SessionContext(session_id="barge", channel="audio")),
        [transcript],
        output_rate=16000,
        idle_timeout_s=None,
    )

    async def end_when_done() -> None:
        import asyncio

        from pipecat.frames.frames import EndFrame

        await asyncio.wait_for(transport.timeline.finished.wait(), timeout=60)
        await worker.queue_frame(EndFrame())

    import asyncio

    ender = asyncio.create_task(end_when_done())
    await run_worker(worker)
    await ender
    timeline = transport.timeline
    [played] = timeline.patient_turns
    agent_during_speech = [
        at for at, _ in timeline.agent_audio if played.speech_start_s + 0.7 <= at <= played.speech_end_s
    ]
    assert not agent_during_speech, "the agent kept talking over the patient"
    result = build_result("mock", timeline, transcript.events)
    assert any("rash" in t["text"].lower() for t in result["turns"] if t["role"] == "patient")
    assert any(at > played.speech_end_s for at, _ in timeline.agent_audio)  # and then it answered


def _backend(settings: Settings):
    from agent.backends import create_backend

    return create_backend(settings)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"", "empty"), (b"this is not audio", "not a readable audio file")],
)
def test_unusable_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, message: str
) -> None:
    wav = tmp_path / "patient.wav"
    if content is not None:
        wav.write_bytes(content)
    out = tmp_path / "out"
    assert main([str(wav), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists()
