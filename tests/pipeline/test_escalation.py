"""The escalation processor: a red flag met is a clinician called, with one typed record, stored once."""

from __future__ import annotations

import json
from pathlib import Path

from pipecat.frames.frames import InterruptionFrame, LLMTextFrame
from pipecat.processors.frameworks.rtvi.frames import RTVIServerMessageFrame
from pipecat.tests.utils import SleepFrame, run_test

from agent.escalation import EscalationRecord, EscalationStore
from agent.policy import Urgency
from pipeline.escalation import EscalationProcessor
from pipeline.frames import BrainFailedFrame, ClinicianRequestFrame
from pipeline.observers import EscalationObserver
from pipeline.second_opinion import SecondOpinionFrame
from tests.pipeline.safety_helpers import escalations, lines, patient, reply, state
from web.queue import EscalationQueue


class CountingStore(EscalationStore):
    """Counts what it is asked to store; ``fail`` makes every save fail like a full disk."""

    def __init__(self, directory: Path, *, fail: bool = False) -> None:
        super().__init__(directory)
        self.saved: list[str] = []
        self.fail = fail

    def save(self, record: EscalationRecord) -> Path:
        self.saved.append(record.id)
        if self.fail:
            raise OSError("no space left on device")
        return super().save(record)


def escalation(tmp_path: Path, store: EscalationStore | None = None, **kwargs) -> EscalationProcessor:
    return EscalationProcessor(session_id="s1", store=store or EscalationStore(tmp_path / "esc"), **kwargs)


async def test_a_red_flag_interrupts_escalates_and_stores_a_redacted_record(tmp_path: Path) -> None:
    down, up = await run_test(
        escalation(tmp_path),
        frames_to_send=[
            patient("My name is John Smith and my mole is bleeding."),
            state("My name is John Smith and my mole is bleeding."),
            *reply("It could be nothing. "),  # the brain's answer, racing the escalation: not passed on
        ],
    )
    assert any(isinstance(f, InterruptionFrame) for f in down)
    assert any("connecting you with a clinician" in line for line in lines(down))
    assert not any(isinstance(f, LLMTextFrame) and "could be nothing" in f.text for f in down)
    [sent] = escalations(down)
    assert sent.level == Urgency.URGENT and isinstance(sent.record, EscalationRecord)
    assert sent.record.rule_ids == ["changing_mole"] and sent.reasons == sent.record.reasons
    [told_brain] = escalations(up)  # the brain stops assessing
    assert told_brain.record is sent.record  # the one typed record, both ways
    assert any(isinstance(f, RTVIServerMessageFrame) and f.data["type"] == "escalation" for f in down)
    [path] = (tmp_path / "esc").glob("*.json")
    record = json.loads(path.read_text())
    assert record["level"] == "urgent" and record["rule_ids"] == ["changing_mole"]
    assert record["status"] == "waiting" and record["channel"] == "video"
    assert "John" not in path.read_text() and "<NAME>" in path.read_text()


async def test_an_emergency_mid_sentence_says_call_the_emergency_number_first(tmp_path: Path) -> None:
    down, _ = await run_test(
        escalation(tmp_path, emergency_number="112"),
        frames_to_send=[state("My lips are swelling up.", final=False)],  # the patient is still talking
    )
    assert "call 112" in lines(down)[0]
    assert [f.level for f in escalations(down)] == [Urgency.EMERGENCY]
    [record] = EscalationStore(tmp_path / "esc").all()
    assert record.transcript == [{"role": "patient", "text": "My lips are swelling up."}]  # the words so far


async def test_a_brain_failure_is_said_and_escalated_never_silent(tmp_path: Path) -> None:
    down, _ = await run_test(
        escalation(tmp_path), frames_to_send=[BrainFailedFrame(reason="the brain timed out")]
    )
    [line] = lines(down)
    assert "technical problem" in line and "clinician" in line
    assert escalations(down)
    [path] = (tmp_path / "esc").glob("*.json")
    assert json.loads(path.read_text())["rule_ids"] == ["system_failure"]


async def test_asking_for_a_clinician_by_keypad_escalates(tmp_path: Path) -> None:
    down, _ = await run_test(
        escalation(tmp_path), frames_to_send=[ClinicianRequestFrame(how="phone keypad 0")]
    )
    assert [f.reasons for f in escalations(down)] == [["you asked to speak with a clinician"]]


async def test_the_models_second_opinion_escalates_like_a_rule(tmp_path: Path) -> None:
    opinion = SecondOpinionFrame(level=Urgency.EMERGENCY, reason="lips swelling after a new medicine")
    down, _ = await run_test(escalation(tmp_path), frames_to_send=[opinion])
    [sent] = escalations(down)
    assert sent.level == Urgency.EMERGENCY and sent.record.rule_ids == ["model_second_opinion"]


async def test_no_escalation_without_a_red_flag(tmp_path: Path) -> None:
    down, _ = await run_test(escalation(tmp_path), frames_to_send=[state("I have an itchy rash, no fever.")])
    assert not escalations(down) and not lines(down)
    assert not (tmp_path / "esc").exists()


async def test_an_urgent_escalation_is_raised_when_an_emergency_follows(tmp_path: Path) -> None:
    down, _ = await run_test(
        escalation(tmp_path),
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
    assert first.record.created_at == raised.record.created_at
    assert "call 911" in lines(down)[-1].lower()
    records = EscalationStore(tmp_path / "esc").all()
    assert len(records) == 1 and records[0].level == Urgency.EMERGENCY


async def test_a_record_that_cannot_be_stored_still_reaches_the_patient_and_the_clinicians(
    tmp_path: Path,
) -> None:
    store = CountingStore(tmp_path / "esc", fail=True)
    processor = escalation(tmp_path, store)
    down, _ = await run_test(processor, frames_to_send=[state("My mole is bleeding.")])
    assert len(store.saved) == 1  # it was tried
    assert any("connecting you with a clinician" in line for line in lines(down))
    assert [f.level for f in escalations(down)] == [Urgency.URGENT]  # on its way to the observers
    assert processor.escalation is None  # not kept anywhere: the next red flag tries again


async def test_one_escalation_is_stored_once_by_the_queue_in_the_server(tmp_path: Path) -> None:
    queue_store = CountingStore(tmp_path / "esc")
    queue = EscalationQueue(queue_store)
    processor = EscalationProcessor(session_id="s1", store=None)  # as the product assembles it
    down, _ = await run_test(
        processor,
        frames_to_send=[state("My mole is bleeding."), SleepFrame(sleep=0.1)],
        observers=[EscalationObserver(queue.add)],
    )
    [sent] = escalations(down)
    assert queue_store.saved == [sent.record.id]
    assert queue.get(sent.record.id) is sent.record  # the typed object, from the processor to the queue
    assert [r.id for r in EscalationStore(tmp_path / "esc").all()] == [sent.record.id]
    await queue.close()


async def test_without_a_queue_the_escalation_processor_stores_it_once(tmp_path: Path) -> None:
    store = CountingStore(tmp_path / "esc")
    down, _ = await run_test(escalation(tmp_path, store), frames_to_send=[state("My mole is bleeding.")])
    [sent] = escalations(down)
    assert store.saved == [sent.record.id]


async def test_the_record_goes_to_the_clinicians_before_the_agent_stops_or_speaks(tmp_path: Path) -> None:
    down, _ = await run_test(escalation(tmp_path), frames_to_send=[state("My mole is bleeding.")])
    kinds = [type(f).__name__ for f in down]
    first_record = kinds.index("EscalationFrame")
    assert first_record < kinds.index("InterruptionFrame")  # nothing that can be cut short comes first
    assert first_record < kinds.index("RTVIServerMessageFrame") < kinds.index("AgentLineFrame")
