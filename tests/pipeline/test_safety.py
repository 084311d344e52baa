"""The safety layer as a session assembles it: escalation, clinician presence, spoken guard, in order.

Each processor has its own tests (``test_escalation.py``, ``test_clinician_presence.py``,
``test_spoken_guard.py``); these check what the three do together reaches the voice.
"""

from __future__ import annotations

import json
from pathlib import Path

from pipecat.frames.frames import InterruptionFrame
from pipecat.processors.frameworks.rtvi.frames import RTVIServerMessageFrame
from pipecat.tests.utils import SleepFrame, run_test

from agent.escalation import EscalationStore
from agent.policy import Urgency
from pipeline.clinician_presence import ClinicianPresenceProcessor
from pipeline.escalation import EscalationProcessor
from pipeline.frames import AgentUtteranceFrame, BrainFailedFrame
from pipeline.safety import safety_processors
from pipeline.spoken_guard import SpokenGuardProcessor
from tests.pipeline.safety_helpers import escalations, layer, patient, reply, spoken, state


def test_the_layer_is_escalation_then_presence_then_the_guard_before_the_voice(tmp_path: Path) -> None:
    processors = safety_processors(session_id="s1", store=EscalationStore(tmp_path))
    assert [type(p) for p in processors] == [
        EscalationProcessor,
        ClinicianPresenceProcessor,
        SpokenGuardProcessor,
    ]


async def test_a_red_flag_interrupts_is_said_and_escalates_with_a_redacted_record(tmp_path: Path) -> None:
    down, up = await run_test(
        layer(tmp_path),
        frames_to_send=[
            patient("My name is John Smith and my mole is bleeding."),
            state("My name is John Smith and my mole is bleeding."),
            *reply("It could be nothing. "),  # the brain's answer, racing the escalation: not spoken
        ],
    )
    assert any(isinstance(f, InterruptionFrame) for f in down)
    said = spoken(down)
    assert "connecting you with a clinician" in said and "could be nothing" not in said
    assert "not a diagnosis" not in said  # the escalation is said as written
    assert [f.text for f in down if isinstance(f, AgentUtteranceFrame)] == [said.strip()]
    assert [e.level for e in escalations(down)] == [Urgency.URGENT]
    assert escalations(up)  # the brain stops assessing
    assert any(isinstance(f, RTVIServerMessageFrame) and f.data["type"] == "escalation" for f in down)
    [path] = (tmp_path / "esc").glob("*.json")
    record = json.loads(path.read_text())
    assert record["level"] == "urgent" and record["rule_ids"] == ["changing_mole"]
    assert "John" not in path.read_text() and "<NAME>" in path.read_text()


async def test_an_emergency_says_call_the_emergency_number_first(tmp_path: Path) -> None:
    down, _ = await run_test(
        layer(tmp_path, emergency_number="112"),
        frames_to_send=[state("My lips are swelling up.", final=False)],
    )
    assert "call 112" in spoken(down)
    assert [f.level for f in escalations(down)] == [Urgency.EMERGENCY]


async def test_a_brain_failure_is_said_and_escalated_never_silent(tmp_path: Path) -> None:
    down, _ = await run_test(layer(tmp_path), frames_to_send=[BrainFailedFrame(reason="the brain timed out")])
    said = spoken(down)
    assert "technical problem" in said and "clinician" in said
    assert escalations(down)


async def test_an_urgent_escalation_is_raised_when_an_emergency_follows(tmp_path: Path) -> None:
    down, _ = await run_test(
        layer(tmp_path),
        frames_to_send=[
            state("There are tiny purple spots on my legs that don't fade when pressed."),
            SleepFrame(sleep=0.1),
            state("I have a fever and a stiff neck and the light hurts my eyes."),
            SleepFrame(sleep=0.1),
        ],
    )
    first, raised = escalations(down)
    assert [first.level, raised.level] == [Urgency.URGENT, Urgency.EMERGENCY]
    assert first.record.id == raised.record.id  # one escalation, raised
    assert "call 911" in spoken(down).lower()
    records = EscalationStore(tmp_path / "esc").all()
    assert len(records) == 1 and records[0].level == Urgency.EMERGENCY
