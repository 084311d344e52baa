"""The mock backend: a deterministic intake interviewer driven by the conversation state."""

from __future__ import annotations

from agent.backends.base import BrainRequest, CameraImage
from agent.backends.mock import InterviewBackend
from agent.facts import ClinicalFacts, extract_facts
from agent.policy import assess


async def say(backend: InterviewBackend, facts: ClinicalFacts, text: str, **extra) -> str:
    extract_facts(text, into=facts)
    request = BrainRequest(patient_text=text, facts=facts.copy(), assessment=assess(facts), **extra)
    return "".join([piece async for piece in backend.reply(request)]).strip()


async def test_the_greeting_carries_the_disclaimer_and_opens_the_interview() -> None:
    greeting = InterviewBackend().greeting()
    assert "not a diagnosis" in greeting and "emergency" in greeting
    assert greeting.endswith("?")


async def test_it_acknowledges_and_asks_only_what_is_still_open() -> None:
    backend, facts = InterviewBackend(), ClinicalFacts()
    first = await say(
        backend, facts, "I have an itchy rash on my left forearm for two weeks.", channel="audio"
    )
    assert "left forearm" in first and "two weeks" in first  # acknowledged
    assert "where" not in first.lower() and "how long" not in first.lower()  # not asked again
    assert "describe it" in first  # no camera: it asks for a description


async def test_the_whole_history_then_a_summary_with_the_policys_recommendation() -> None:
    backend, facts = InterviewBackend(), ClinicalFacts()
    replies = [
        await say(backend, facts, text, channel="audio")
        for text in (
            "I have a dry itchy patch on my elbow.",
            "It's pink and flat, about the size of a coin.",
            "About a month.",
            "It doesn't hurt or bleed.",
            "No, it hasn't changed.",
            "No fever, I feel fine.",
            "I burn easily in the sun.",
            "I've tried moisturiser.",
        )
    ]
    questions = " ".join(replies[:-1]).lower()
    for topic in ("describe it", "how long", "itch, hurt", "changed in size", "fever", "sun", "tried"):
        assert topic in questions or topic in replies[-1].lower(), topic
    summary = replies[-1]
    assert "here is what i heard" in summary.lower()
    assert "elbow" in summary and "moisturiser" in summary
    assert "routine appointment" in summary


async def test_same_conversation_same_words() -> None:
    first = await say(InterviewBackend(), ClinicalFacts(), "I have a mole on my back.")
    second = await say(InterviewBackend(), ClinicalFacts(), "I have a mole on my back.")
    assert first == second


async def test_with_a_camera_it_asks_to_see_the_skin_and_says_how_to_fix_a_bad_picture() -> None:
    backend, facts = InterviewBackend(), ClinicalFacts()
    dark = CameraImage(jpeg=b"", width=640, height=480, quality="dark")
    reply = await say(backend, facts, "I have a rash on my arm.", channel="video", images=[dark])
    assert "too dark" in reply
    fine = CameraImage(jpeg=b"", width=640, height=480, quality="ok")
    reply = await say(
        InterviewBackend(), ClinicalFacts(), "I have a rash on my arm.", channel="video", images=[fine]
    )
    assert "camera" not in reply and "how long" in reply.lower()
