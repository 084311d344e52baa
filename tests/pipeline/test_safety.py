"""The safety processor: guarded words, disclaimers, escalation mid-conversation, failing safe."""

from __future__ import annotations

import json
from pathlib import Path

from pipecat.frames.frames import (
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    TranscriptionFrame,
)
from pipecat.processors.frameworks.rtvi.frames import RTVIServerMessageFrame
from pipecat.tests.utils import SleepFrame, run_test

from agent.escalation import EscalationStore
from agent.facts import extract_facts
from agent.policy import assess
from pipeline.frames import (
    AgentUtteranceFrame,
    BrainFailedFrame,
    ClinicalStateFrame,
    ClinicianJoinedFrame,
    ClinicianLeftFrame,
    ClinicianRequestFrame,
    EscalationFrame,
    EscalationResolvedFrame,
    SummaryRequestFrame,
)
from pipeline.safety import SafetyProcessor


def safety(tmp_path: Path, **kwargs) -> SafetyProcessor:
    return SafetyProcessor(session_id="s1", store=EscalationStore(tmp_path / "esc"), **kwargs)


def reply(*pieces: str) -> list:
    return [LLMFullResponseStartFrame(), *(LLMTextFrame(p) for p in pieces), LLMFullResponseEndFrame()]


def state(text: str, final: bool = True) -> ClinicalStateFrame:
    facts = extract_facts(text)
    return ClinicalStateFrame(facts=facts, assessment=assess(facts), final=final, text=text)


def spoken(frames) -> str:
    return "".join(f.text for f in frames if isinstance(f, LLMTextFrame))


def patient(text: str) -> TranscriptionFrame:
    return TranscriptionFrame(text=text, user_id="patient", timestamp="", finalized=True)


async def test_unsafe_sentences_are_rewritten_before_they_are_spoken(tmp_path: Path) -> None:
    down, _ = await run_test(
        safety(tmp_path),
        frames_to_send=[*reply("Hello."), *reply("You definitely have eczema. ", "Take 200 mg of it daily.")],
    )
    said = spoken(down)
    assert "definitely have eczema" not in said and "200 mg" not in said
    assert "might be eczema" in said and "pharmacist can advise" in said


async def test_the_first_turn_gets_the_disclaimer_and_utterances_are_reported(tmp_path: Path) -> None:
    down, up = await run_test(safety(tmp_path), frames_to_send=reply("Hello, how can I help?"))
    assert "not a diagnosis" in spoken(down)
    utterances = [f for f in down if isinstance(f, AgentUtteranceFrame)]
    assert len(utterances) == 1 and utterances[0].disclaimer
    assert any(isinstance(f, AgentUtteranceFrame) for f in up)  # the brain keeps its history


async def test_a_red_flag_interrupts_escalates_and_persists_a_redacted_record(tmp_path: Path) -> None:
    processor = safety(tmp_path)
    down, up = await run_test(
        processor,
        frames_to_send=[
            patient("My name is John Smith and my mole is bleeding."),
            state("My name is John Smith and my mole is bleeding."),
            *reply("It could be nothing. "),  # the brain's answer, racing the escalation: not spoken
        ],
    )
    assert any(isinstance(f, InterruptionFrame) for f in down)
    said = spoken(down)
    assert "connecting you with a clinician" in said and "could be nothing" not in said
    escalations = [f for f in down if isinstance(f, EscalationFrame)]
    assert escalations and escalations[0].level == "urgent"
    assert any(isinstance(f, EscalationFrame) for f in up)  # the brain stops assessing
    assert any(isinstance(f, RTVIServerMessageFrame) and f.data["type"] == "escalation" for f in down)
    [path] = (tmp_path / "esc").glob("*.json")
    record = json.loads(path.read_text())
    assert record["level"] == "urgent" and record["rule_ids"] == ["changing_mole"]
    assert "John" not in path.read_text() and "<NAME>" in path.read_text()


async def test_an_emergency_says_call_the_emergency_number_first(tmp_path: Path) -> None:
    down, _ = await run_test(
        safety(tmp_path, emergency_number="112"),
        frames_to_send=[state("My lips are swelling up.", final=False)],
    )
    assert "call 112" in spoken(down)
    assert [f.level for f in down if isinstance(f, EscalationFrame)] == ["emergency"]


async def test_after_escalating_it_keeps_the_patient_company_without_assessing(tmp_path: Path) -> None:
    down, _ = await run_test(
        safety(tmp_path),
        frames_to_send=[
            state("The mole is bleeding."),
            SleepFrame(sleep=0.1),  # the patient's next turn comes after the escalation message
            patient("Is it cancer?"),
            *reply("It looks like melanoma."),
        ],
    )
    said = spoken(down)
    assert "melanoma" not in said
    assert "clinician has been alerted" in said


async def test_after_escalating_speech_it_could_not_understand_is_answered_too(tmp_path: Path) -> None:
    unclear = state("")  # a turn of speech with no words in it
    down, _ = await run_test(
        safety(tmp_path),
        frames_to_send=[state("The mole is bleeding."), SleepFrame(sleep=0.1), unclear],
    )
    lines = [f.text for f in down if isinstance(f, AgentUtteranceFrame)]
    assert len(lines) == 2 and "clinician" in lines[1]  # the escalation, then company: never silence


async def test_a_brain_failure_is_said_and_escalated_never_silent(tmp_path: Path) -> None:
    down, _ = await run_test(
        safety(tmp_path), frames_to_send=[BrainFailedFrame(reason="the brain timed out")]
    )
    said = spoken(down)
    assert "technical problem" in said and "clinician" in said
    assert any(isinstance(f, EscalationFrame) for f in down)
    [path] = (tmp_path / "esc").glob("*.json")
    assert json.loads(path.read_text())["rule_ids"] == ["system_failure"]


async def test_asking_for_a_clinician_by_keypad_escalates(tmp_path: Path) -> None:
    down, _ = await run_test(safety(tmp_path), frames_to_send=[ClinicianRequestFrame(how="phone keypad 0")])
    assert [f.reasons for f in down if isinstance(f, EscalationFrame)] == [
        ["you asked to speak with a clinician"]
    ]


async def test_no_escalation_without_a_red_flag(tmp_path: Path) -> None:
    down, _ = await run_test(safety(tmp_path), frames_to_send=[state("I have an itchy rash, no fever.")])
    assert not any(isinstance(f, EscalationFrame) for f in down)
    assert not (tmp_path / "esc").exists()


async def test_the_agent_announces_the_clinician_then_stays_quiet(tmp_path: Path) -> None:
    down, _ = await run_test(
        safety(tmp_path),
        frames_to_send=[
            state("My mole is bleeding."),
            SleepFrame(sleep=0.1),
            ClinicianJoinedFrame(clinician="Dr. Okafor"),
            SleepFrame(sleep=0.1),
            patient("Is it serious, doctor?"),
            *reply("It looks like melanoma."),
        ],
    )
    said = spoken(down)
    after_join = said[said.index("Dr. Okafor is joining now") :]
    assert "stay quiet" in after_join
    assert "melanoma" not in after_join and "clinician has been alerted" not in after_join
    assert any(
        isinstance(f, RTVIServerMessageFrame)
        and f.data == {"type": "clinician", "status": "joined", "name": "Dr. Okafor"}
        for f in down
    )


async def test_a_summary_on_request_and_the_interview_resumes_after_hand_back(tmp_path: Path) -> None:
    down, up = await run_test(
        safety(tmp_path),
        frames_to_send=[
            state("I have a mole on my back that is bleeding."),
            SleepFrame(sleep=0.1),
            ClinicianJoinedFrame(clinician="Dr. Okafor"),
            SummaryRequestFrame(),
            SleepFrame(sleep=0.1),
            ClinicianLeftFrame(clinician="Dr. Okafor", outcome="handed_back"),
            SleepFrame(sleep=0.1),
            *reply("Is there anything else?"),
        ],
    )
    said = spoken(down)
    assert "Here is what the patient has told me" in said and "Site: back." in said
    assert "Thank you, Dr. Okafor. I'm back with you" in said
    assert "Is there anything else?" in said  # the brain is heard again
    assert any(isinstance(f, EscalationResolvedFrame) for f in up)


async def test_ending_the_session_says_goodbye(tmp_path: Path) -> None:
    down, _ = await run_test(
        safety(tmp_path),
        frames_to_send=[
            state("My lips are swelling."),
            SleepFrame(sleep=0.1),
            ClinicianJoinedFrame(clinician="Dr. Okafor"),
            SleepFrame(sleep=0.1),
            ClinicianLeftFrame(clinician="Dr. Okafor", outcome="ended"),
        ],
    )
    assert "This session is ending now" in spoken(down)


async def test_a_waiting_patient_is_reassured_and_given_the_emergency_advice_after_a_long_wait(
    tmp_path: Path,
) -> None:
    down, _ = await run_test(
        safety(tmp_path, reassure_every_s=0.2, repeat_emergency_after_s=0.5, emergency_number="999"),
        frames_to_send=[state("My mole is bleeding."), SleepFrame(sleep=1.0)],
    )
    company = [f.text for f in down if isinstance(f, AgentUtteranceFrame) and "clinician" in f.text][1:]
    assert len(company) >= 3  # the escalation message, then lines every 0.2 s of quiet
    assert not any("999" in line for line in company[:1])
    assert any("call 999" in line for line in company)


async def test_an_urgent_escalation_is_raised_when_an_emergency_follows(tmp_path: Path) -> None:
    down, _ = await run_test(
        safety(tmp_path),
        frames_to_send=[
            state("There are tiny purple spots on my legs that don't fade when pressed."),
            SleepFrame(sleep=0.1),
            state("I have a fever and a stiff neck and the light hurts my eyes."),
            SleepFrame(sleep=0.1),
        ],
    )
    escalations = [f for f in down if isinstance(f, EscalationFrame)]
    assert [e.level for e in escalations] == ["urgent", "emergency"]
    assert escalations[0].record["id"] == escalations[1].record["id"]  # one escalation, raised
    assert "call 911" in spoken(down).lower()
    records = EscalationStore(tmp_path / "esc").all()
    assert len(records) == 1 and records[0].level == "emergency"
