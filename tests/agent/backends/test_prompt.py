"""The prompt every backend sends: the policy's decision, the facts, similar cases, the channel."""

from __future__ import annotations

from agent.backends.base import BrainRequest, RetrievedCase, Utterance
from agent.backends.prompt import SESSION_STARTED, build_prompt
from agent.facts import ClinicalFacts, Presence
from agent.policy import Assessment, Reason, Urgency
from tests.agent.backends.support import jpeg

URGENT = Assessment(
    Urgency.URGENT,
    (Reason("changing_mole", "a mole that is changing in size, shape or colour", "NICE NG12"),
     Reason("bleeding_lesion", "a spot that bleeds without being injured", "NICE NG12")),
)  # fmt: skip
CASES = [
    RetrievedCase("case-1", {"Melanoma": 0.6, "Melanocytic nevus": 0.3, "SK": 0.1}, 0.21, "image"),
    RetrievedCase("case-2", {"Eczema": 1.0}, 0.35, "text"),
]


def request(**changes) -> BrainRequest:
    base = dict(
        patient_text="It bled yesterday.",
        history=[
            Utterance("agent", "Hello, what's bothering you about your skin today?"),
            Utterance("patient", "A mole on my back keeps growing."),
            Utterance("agent", "How long has it been changing?"),
        ],
        facts=ClinicalFacts(site_words=["upper back"], duration_words="two months"),
        assessment=URGENT,
        similar_cases=CASES,
    )
    return BrainRequest(**(base | changes))


def test_the_policys_level_and_reasons_are_given_as_a_decision_the_model_must_not_lower() -> None:
    system = build_prompt(request()).system
    assert "URGENT" in system and "a clinician is joining the conversation now" in system
    assert "a mole that is changing in size, shape or colour" in system
    assert "a spot that bleeds without being injured" in system
    assert "Never contradict it and never make it sound less urgent" in system


def test_an_emergency_names_the_configured_emergency_number() -> None:
    emergency = Assessment(Urgency.EMERGENCY, (Reason("breathing_difficulty", "trouble breathing", "RCUK"),))
    system = build_prompt(request(assessment=emergency), emergency_number="112").system
    assert "call 112" in system and "trouble breathing" in system


def test_the_conversation_state_and_similar_cases_are_in_context_as_cases_not_a_diagnosis() -> None:
    system = build_prompt(request()).system
    assert "site: upper back; duration: two months." in system
    assert "Melanoma 0.60, Melanocytic nevus 0.30, SK 0.10" in system
    assert "Eczema 1.00" in system
    assert "Dermatologist-labelled similar cases" in system and "not a diagnosis" in system


def test_the_rules_of_speaking_aloud_and_the_safety_limits_are_always_there() -> None:
    system = build_prompt(request(assessment=None, similar_cases=[], facts=None)).system
    assert "One question at a time" in system or "one question at a time" in system.lower()
    assert "No markdown, no lists" in system
    assert "never give a diagnosis" in system
    assert "never prescribe" in system.lower() and "dose" in system
    assert "discourage" in system
    assert "No clinical details given yet." in system and "Not assessed yet" in system


def test_an_audio_only_caller_is_not_asked_to_show_the_skin() -> None:
    audio = build_prompt(request(channel="audio")).system
    video = build_prompt(request(channel="video")).system
    assert "cannot show you the skin" in audio and "Never ask them to show it" in audio
    assert "camera" in video and "cannot show you the skin" not in video


def test_turns_alternate_from_the_patient_and_end_with_the_patients_words_and_camera_frame() -> None:
    frame = jpeg()
    prompt = build_prompt(request(images=[frame]))
    roles = [m.role for m in prompt.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert prompt.messages[0].text == SESSION_STARTED  # the agent's greeting came first
    assert prompt.messages[-1].text == "It bled yesterday."
    assert prompt.messages[-1].images == (frame.jpeg,)
    assert all(not m.images for m in prompt.messages[:-1])


def test_a_blurry_frame_is_flagged_and_repeated_patient_turns_merge() -> None:
    blurry = jpeg()
    blurry = type(blurry)(blurry.jpeg, blurry.width, blurry.height, quality="blurry")
    history = [Utterance("patient", "Hello?"), Utterance("patient", "Are you there?")]
    prompt = build_prompt(request(history=history, images=[blurry]))
    assert [m.role for m in prompt.messages] == ["user"]
    assert prompt.messages[0].text.startswith("Hello?\nAre you there?\nIt bled yesterday.")
    assert "camera frame is blurry" in prompt.messages[0].text


def test_redaction_covers_history_patient_words_and_summary() -> None:
    facts = ClinicalFacts(site_words=["Alice's arm"])
    history = [Utterance("patient", "I'm Alice."), Utterance("agent", "Thanks Alice.")]
    prompt = build_prompt(
        request(history=history, facts=facts, patient_text="Alice again."),
        redact=lambda text: text.replace("Alice", "<NAME>"),
    )
    everything = prompt.system + " ".join(m.text for m in prompt.messages)
    assert "Alice" not in everything and everything.count("<NAME>") == 4


def facts_with(*present: str, absent: tuple[str, ...] = ()) -> ClinicalFacts:
    facts = ClinicalFacts()
    facts.findings.update({fid: Presence.PRESENT for fid in present})
    facts.findings.update({fid: Presence.ABSENT for fid in absent})
    return facts


def test_the_screening_questions_the_facts_call_for_are_in_the_instructions() -> None:
    system = build_prompt(request(facts=facts_with("new_medicine", "rash"))).system
    assert "Screening questions: what the patient has said raises a rash after a new medicine." in system
    assert (
        "Question 1: Do you have any sores in your mouth, sore or red eyes, or blisters or peeling skin?"
        in system
    )
    assert (
        "Question 2: Any swelling of your lips, face or tongue, or trouble breathing or swallowing?" in system
    )
    assert "skip any the patient has already answered" in system
    assert system.index("Screening questions") > system.index("Urgency:")  # the policy still decides


def test_answered_screening_questions_are_left_out_and_none_without_a_context() -> None:
    system = build_prompt(request(facts=facts_with("new_medicine", "rash", absent=("mouth_sores",)))).system
    assert "sores in your mouth" not in system and "Question 1: Any swelling of your lips" in system
    assert "Screening questions" not in build_prompt(request()).system
    assert "Screening questions" not in build_prompt(request(facts=facts_with("rash"))).system
    child = build_prompt(request(facts=facts_with("infant", "fever", "wound"))).system
    assert "a feverish child or baby; a wound, bite or burn" in child
    assert "Is your child very drowsy" in child and "Is the pain much worse than it looks?" in child


def test_screening_questions_on_the_phone_never_ask_to_show_the_skin() -> None:
    audio = build_prompt(request(channel="audio", facts=facts_with("burn"))).system
    video = build_prompt(request(channel="video", facts=facts_with("burn"))).system
    assert (
        "Question 1: Is the burn bigger than the palm of your hand, or white, leathery or charred?" in audio
    )
    assert "show me the burn" not in audio and "Could you show me the burn on camera?" in video
