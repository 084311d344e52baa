"""The mock backend: a deterministic intake interviewer driven by the conversation state."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agent.backends.base import BrainRequest, CameraImage
from agent.backends.mock import InterviewBackend
from agent.facts import ClinicalFacts, Presence, extract_facts, findings_catalogue, site_ids
from agent.interview import (
    TOPICS,
    acknowledge,
    load_screening,
    screening_due,
    summary_line,
)
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


# --- screening questions by context (agent/screening.yaml) ---------------------------------

MUCOSA = "Do you have any sores in your mouth, sore or red eyes, or blisters or peeling skin?"
AIRWAY = "Any swelling of your lips, face or tongue, or trouble breathing or swallowing?"
DROWSY = "Is your child very drowsy, floppy, or hard to wake?"
GLASS = "If you press a clear glass on the spots, do they fade?"
CHILD_BREATHING = "Is their breathing fast or noisy, or their skin pale, blotchy or blue?"
SPREADING = "Is there redness spreading out from it, or a red line running from it?"
PAIN = "Is the pain much worse than it looks?"
FEVER = "Do you have a fever or feel shivery?"
BURN = "Is the burn bigger than the palm of your hand, or white, leathery or charred?"
CHANGE = "Has it changed in size, shape or colour recently?"
BLEEDING = "Has it bled, itched, or not healed?"
INFECTION = "Any fever, or redness or swelling spreading?"
FOOT = "Is any of the skin on your foot broken, black or smelly?"


def facts_with(*present: str, absent: tuple[str, ...] = (), sites: tuple[str, ...] = ()) -> ClinicalFacts:
    """Facts built directly (some ids are still being added to findings.yaml: no phrases needed)."""
    facts = ClinicalFacts(body_sites=list(sites))
    for fid in present:
        facts.findings[fid] = Presence.PRESENT
    for fid in absent:
        facts.findings[fid] = Presence.ABSENT
    return facts


async def turn(
    backend: InterviewBackend, facts: ClinicalFacts, channel: str = "audio", text: str = "No."
) -> str:
    request = BrainRequest(patient_text=text, facts=facts.copy(), assessment=assess(facts), channel=channel)
    return "".join([piece async for piece in backend.reply(request)]).strip()


async def questions(facts: ClinicalFacts, turns: int, channel: str = "audio") -> list[str]:
    """The agent's replies to ``turns`` answers that tell it nothing new ("No.")."""
    backend = InterviewBackend()
    return [await turn(backend, facts, channel) for _ in range(turns)]


WHERE = "Where on your body is it?"
WHAT = TOPICS[0].question
DESCRIBE = TOPICS[2].ask("audio")
CONTEXTS = {  # present findings, body sites, its screening questions, then the first ordinary topic
    "drug_rash": (("new_medicine", "rash"), (), [MUCOSA, AIRWAY], WHERE),
    "drug_redness": (("new_medicine", "redness"), (), [MUCOSA, AIRWAY], WHERE),
    "feverish_child": (("child", "fever"), (), [DROWSY, GLASS, CHILD_BREATHING], WHAT),
    "feverish_baby": (("infant", "fever", "rash"), (), [DROWSY, GLASS, CHILD_BREATHING], WHERE),
    "wound": (("wound",), (), [SPREADING, PAIN, FEVER], WHERE),
    "burn": (("burn", "redness"), (), [BURN, SPREADING, PAIN, FEVER], WHERE),
    "mole": (("pigmented_lesion",), (), [CHANGE, BLEEDING], WHERE),
    "lump": (("lump",), (), [CHANGE, BLEEDING], WHERE),
    "diabetes": (("diabetes", "rash"), (), [INFECTION], WHERE),
    "immunosuppressed": (("immunosuppressed", "sore"), (), [INFECTION, CHANGE, BLEEDING], WHERE),
    "diabetic_foot": (("diabetes", "wound"), ("foot_sole",), [SPREADING, PAIN, FEVER, FOOT], DESCRIBE),
}


@pytest.mark.parametrize("name", CONTEXTS)
async def test_a_context_is_screened_first_each_question_once_then_the_history_goes_on(name: str) -> None:
    present, sites, expected, first_topic = CONTEXTS[name]
    replies = await questions(facts_with(*present, sites=sites), len(expected) + 1)
    for reply, question in zip(replies, expected, strict=False):
        assert reply.endswith(question), (reply, question)
    after = replies[len(expected)]
    assert not any(question in after for question in expected)  # each asked once
    assert after.endswith(first_topic)  # then the ordinary topics that remain, in their order


async def test_screening_comes_before_the_topics_that_remain_even_mid_interview() -> None:
    backend, facts = InterviewBackend(), facts_with("rash")
    assert (await turn(backend, facts)).endswith("Where on your body is it?")
    facts.findings["new_medicine"] = Presence.PRESENT  # "it started after the new antibiotic"
    assert (await turn(backend, facts)).endswith(MUCOSA)
    assert (await turn(backend, facts)).endswith(AIRWAY)
    assert (await turn(backend, facts)).endswith(TOPICS[2].ask("audio"))  # back to the history


async def test_answered_screening_questions_are_skipped() -> None:
    assert (await questions(facts_with("new_medicine", "rash", absent=("mouth_sores",)), 1))[0].endswith(
        AIRWAY
    )
    child = facts_with("child", "fever", "unwell", absent=("fast_breathing",))
    assert (await questions(child, 1))[0].endswith(GLASS)
    wound = facts_with("wound", "red_streak", "severe_pain", "chills")
    assert (await questions(wound, 1))[0].endswith("Where on your body is it?")


async def test_the_findings_that_raise_a_context_do_not_answer_its_questions() -> None:
    # blisters after a new medicine: the mouth and eyes still have to be asked about
    [reply] = await questions(facts_with("new_medicine", "blisters"), 1)
    assert reply.endswith(MUCOSA)
    [reply] = await questions(facts_with("new_medicine", "rash", absent=("blisters",)), 1)
    assert reply.endswith(MUCOSA)
    # a diabetic's sore on the foot: still asked whether the skin is broken, black or smelly
    [reply] = await questions(facts_with("diabetes", "sore", sites=("foot_top_or_side",)), 1)
    assert reply.endswith(FOOT)


async def test_a_screening_answer_is_acknowledged_and_can_close_the_rest_of_the_context() -> None:
    backend, facts = InterviewBackend(), facts_with("pigmented_lesion")
    assert (await turn(backend, facts)).endswith(CHANGE)
    facts.findings["growing"] = Presence.PRESENT
    facts.findings["bleeding"] = Presence.ABSENT
    reply = await turn(backend, facts, text="It's got bigger but it hasn't bled.")
    assert reply.startswith("Thank you:") and "bleeding" in reply
    assert BLEEDING not in reply and reply.endswith("Where on your body is it?")


async def test_questions_already_asked_by_another_context_are_not_asked_twice() -> None:
    replies = await questions(facts_with("wound", "diabetes"), 4)
    assert all(reply.endswith(q) for reply, q in zip(replies, [SPREADING, PAIN, FEVER], strict=False))
    assert INFECTION not in replies[3] and replies[3].endswith("Where on your body is it?")


async def test_ordinary_topics_a_screening_question_already_asked_are_not_repeated() -> None:
    facts = facts_with("pigmented_lesion", sites=("torso_back",))
    facts.site_words, facts.duration = ["back"], "ONE_TO_THREE_MONTHS"
    replies = " ".join(await questions(facts, 8))
    assert CHANGE in replies and BLEEDING in replies
    assert TOPICS[4].question not in replies and TOPICS[5].question not in replies  # symptoms, change
    assert TOPICS[6].question in replies and "here is what i heard" in replies.lower()


async def test_without_a_context_the_topic_order_is_unchanged() -> None:
    facts = facts_with("rash")
    replies = await questions(facts, len(TOPICS))
    assert replies[0] == "Thank you: a rash. Where on your body is it?"
    assert replies[1:-1] == [t.ask("audio") for t in TOPICS[2:]]
    assert "here is what i heard" in replies[-1].lower()


async def test_the_phone_variant_never_asks_to_show_the_skin() -> None:
    [audio] = await questions(facts_with("burn"), 1, channel="audio")
    [video] = await questions(facts_with("burn"), 1, channel="video")
    assert audio.endswith(BURN) and "show" not in audio.lower()
    assert "show me the burn on camera" in video
    [audio] = await questions(facts_with("child", "fever", "unwell"), 1, channel="audio")
    [video] = await questions(facts_with("child", "fever", "unwell"), 1, channel="video")
    assert audio.endswith(GLASS) and "camera" in video


async def test_a_context_that_appears_after_the_summary_is_still_screened() -> None:
    facts = facts_with("rash")
    backend = InterviewBackend()
    for _ in range(len(TOPICS)):
        reply = await turn(backend, facts)
    assert "here is what i heard" in reply.lower()
    facts.findings["new_medicine"] = Presence.PRESENT
    assert (await turn(backend, facts)).endswith(MUCOSA)
    assert (await turn(backend, facts)).endswith(AIRWAY)
    last = await turn(backend, facts)
    assert "added that to my notes" in last and "here is what i heard" in last.lower()


async def test_acknowledgement_and_summary_work_with_findings_the_lexicon_does_not_label_yet() -> None:
    before, after = ClinicalFacts(), facts_with("child", "fever", absent=("altered_consciousness",))
    heard = acknowledge(before, after)
    assert heard.startswith("Thank you:") and "a child" in heard and "; no " in heard
    assert acknowledge(before, facts_with("not_yet_in_the_lexicon")) == "Thank you: not yet in the lexicon."
    assert "Here is what I heard" in summary_line(after, assess(after))


# --- the screening file ---------------------------------------------------------------------


def test_the_screening_file_names_only_known_findings_and_sites() -> None:
    contexts = load_screening()
    known = set(findings_catalogue()) | site_ids()
    assert {c.id for c in contexts} >= {"drug_rash", "feverish_child", "wound", "burn", "mole_or_spot"}
    for context in contexts:
        assert set().union(*context.when) <= known
        for question in context.questions:
            assert question.covers <= known and "?" in question.question
            assert "show" not in question.ask("audio").lower()


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ("covers: [not_a_finding]", "unknown findings"),
        ("when: site_elbow_pit", "unknown findings or sites"),
        ("id: twice", "appears twice"),
    ],
)
def test_a_mistake_in_the_screening_file_is_an_error_not_a_silent_miss(
    tmp_path: Path, change: str, error: str
) -> None:
    question = {"id": "q", "ask": "Is it so?", "covers": ["fever"]}
    context = {"id": "twice" if change.startswith("id") else "c", "says": "x", "when": [["rash"]]}
    key, value = change.split(": ")
    if key == "covers":
        question["covers"] = ["not_a_finding"]
    elif key == "when":
        context["when"] = [["rash"], ["site_elbow_pit"]]
    else:
        question["id"] = "twice"
    path = tmp_path / "screening.yaml"
    path.write_text(yaml.safe_dump({"contexts": [context | {"questions": [question]}]}))
    with pytest.raises(ValueError, match=error):
        load_screening(path)


def test_ids_still_being_added_to_the_lexicon_are_accepted(tmp_path: Path) -> None:
    path = tmp_path / "screening.yaml"
    spec = {
        "id": "c",
        "says": "x",
        "when": [["gangrene"]],
        "questions": [{"id": "q", "ask": "?", "covers": ["crepitus"]}],
    }
    path.write_text(yaml.safe_dump({"contexts": [spec]}))
    [context] = load_screening(path)
    assert context.applies(facts_with("gangrene")) and not context.applies(facts_with("rash"))
    assert screening_due(facts_with("gangrene"), contexts=(context,)) == [(context, context.questions[0])]
    assert screening_due(facts_with("gangrene", absent=("crepitus",)), contexts=(context,)) == []


async def test_a_rash_after_a_new_antibiotic_in_the_patients_words_is_screened_first() -> None:
    backend, facts = InterviewBackend(), ClinicalFacts()
    text = "I started amoxicillin last week and now I have a rash on my chest."
    first = await say(backend, facts, text, channel="audio")
    assert "chest" in first and first.endswith(MUCOSA)
    assert (await say(backend, facts, "No.", channel="audio")).endswith(AIRWAY)
    assert (await say(backend, facts, "No, nothing like that.", channel="audio")).endswith(DESCRIBE)
