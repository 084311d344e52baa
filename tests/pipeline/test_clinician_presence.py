"""The clinician-presence processor: company while waiting, a clinician's arrival, summary, hand-back, end.

The first tests drive the processor alone with the escalation it follows; the rest run the whole
safety layer, as a session does, so the words checked are the ones that reach the voice.
"""

from __future__ import annotations

from pathlib import Path

from pipecat.processors.frameworks.rtvi.frames import RTVIServerMessageFrame
from pipecat.tests.utils import SleepFrame, run_test

from agent.policy import Urgency
from pipeline.clinician_presence import ClinicianPresenceProcessor
from pipeline.frames import (
    AgentLineFrame,
    AgentUtteranceFrame,
    ClinicianExit,
    ClinicianJoinedFrame,
    ClinicianLeftFrame,
    EscalationResolvedFrame,
    SummaryRequestFrame,
)
from tests.pipeline.safety_helpers import escalation_frame, layer, lines, patient, reply, spoken, state


async def test_no_company_lines_before_an_escalation() -> None:
    down, _ = await run_test(
        ClinicianPresenceProcessor(), frames_to_send=[patient("I have a rash."), state("")]
    )
    assert lines(down) == []


async def test_each_turn_while_waiting_gets_a_company_line_and_a_raised_escalation_its_advice() -> None:
    down, _ = await run_test(
        ClinicianPresenceProcessor(emergency_number="999"),
        frames_to_send=[
            patient("My mole is bleeding."),  # on its way as the escalation overtakes it: no company yet
            escalation_frame(Urgency.URGENT),
            AgentLineFrame(text="I'm connecting you with a clinician now."),  # the escalation's message
            patient("Is it serious?"),
            SleepFrame(sleep=0.1),  # an escalation is a system frame: it would overtake the turn
            escalation_frame(Urgency.EMERGENCY),  # raised
            AgentLineFrame(text="Please call 999 now."),
            patient("What should I do?"),
        ],
    )
    company = [line for line in lines(down) if "connecting" not in line and line != "Please call 999 now."]
    first, second = company
    assert "clinician" in first and "999" not in first
    assert "call 999" in second


async def test_after_escalating_it_keeps_the_patient_company_without_assessing(tmp_path: Path) -> None:
    down, _ = await run_test(
        layer(tmp_path),
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
        layer(tmp_path),
        frames_to_send=[state("The mole is bleeding."), SleepFrame(sleep=0.1), unclear],
    )
    said = [f.text for f in down if isinstance(f, AgentUtteranceFrame)]
    assert len(said) == 2 and "clinician" in said[1]  # the escalation, then company: never silence


async def test_the_agent_announces_the_clinician_then_stays_quiet(tmp_path: Path) -> None:
    down, _ = await run_test(
        layer(tmp_path),
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
        layer(tmp_path),
        frames_to_send=[
            state("I have a mole on my back that is bleeding."),
            SleepFrame(sleep=0.1),
            ClinicianJoinedFrame(clinician="Dr. Okafor"),
            SummaryRequestFrame(),
            SleepFrame(sleep=0.1),
            ClinicianLeftFrame(clinician="Dr. Okafor", outcome=ClinicianExit.HANDED_BACK),
            SleepFrame(sleep=0.1),
            *reply("Is there anything else?"),
        ],
    )
    said = spoken(down)
    assert "Here is what the patient has told me" in said and "Site: back." in said
    assert "Thank you, Dr. Okafor. I'm back with you" in said
    assert "Is there anything else?" in said  # the brain is heard again
    assert any(isinstance(f, EscalationResolvedFrame) for f in up)
    assert any(
        isinstance(f, RTVIServerMessageFrame)
        and f.data == {"type": "clinician", "status": "left", "outcome": "handed_back"}
        for f in down
    )


async def test_ending_the_session_says_goodbye(tmp_path: Path) -> None:
    down, up = await run_test(
        layer(tmp_path),
        frames_to_send=[
            state("My lips are swelling."),
            SleepFrame(sleep=0.1),
            ClinicianJoinedFrame(clinician="Dr. Okafor"),
            SleepFrame(sleep=0.1),
            ClinicianLeftFrame(clinician="Dr. Okafor", outcome="ended"),  # as the room sends it
        ],
    )
    assert "This session is ending now" in spoken(down)
    assert not any(isinstance(f, EscalationResolvedFrame) for f in up)


async def test_an_escalation_ended_before_a_clinician_joined_says_goodbye_and_promises_nobody() -> None:
    down, _ = await run_test(
        ClinicianPresenceProcessor(),
        frames_to_send=[
            escalation_frame(Urgency.URGENT),
            AgentLineFrame(text="I'm connecting you with a clinician now."),
            SleepFrame(sleep=0.05),  # a system frame would overtake the message
            ClinicianLeftFrame(clinician="the clinician", outcome=ClinicianExit.ENDED),  # ended from claimed
            SleepFrame(sleep=0.05),
            patient("Hello? Is anyone coming?"),
        ],
    )
    assert lines(down) == [
        "I'm connecting you with a clinician now.",
        "Thank you for talking with us today. This session is ending now. Take care.",
    ]  # and no company line promising a clinician after it


async def test_a_waiting_patient_is_reassured_and_given_the_emergency_advice_after_a_long_wait(
    tmp_path: Path,
) -> None:
    down, _ = await run_test(
        layer(tmp_path, reassure_every_s=0.2, repeat_emergency_after_s=0.5, emergency_number="999"),
        frames_to_send=[state("My mole is bleeding."), SleepFrame(sleep=1.0)],
    )
    company = [f.text for f in down if isinstance(f, AgentUtteranceFrame) and "clinician" in f.text][1:]
    assert len(company) >= 3  # the escalation message, then lines every 0.2 s of quiet
    assert not any("999" in line for line in company[:1])
    assert any("call 999" in line for line in company)
