"""The triage processor: the state goes downstream before the words it came from."""

from __future__ import annotations

from pipecat.frames.frames import InterimTranscriptionFrame, TranscriptionFrame
from pipecat.tests.utils import run_test

from agent.clarify import AskKind
from agent.policy import Urgency
from agent.semantic_flags import PrototypeMatch
from pipeline.frames import ClinicalStateFrame, Heard, PreemptiveTurnFrame, UnclearSpeechFrame
from pipeline.triage import TriageProcessor


async def test_each_turn_is_committed_and_assessed_before_the_brain_sees_it() -> None:
    triage = TriageProcessor()
    down, _ = await run_test(
        triage,
        frames_to_send=[
            TranscriptionFrame(text="I have a mole on my back.", user_id="p", timestamp="", finalized=True),
            TranscriptionFrame(text="It has started bleeding.", user_id="p", timestamp="", finalized=True),
        ],
    )
    kinds = [type(f) for f in down]
    assert kinds == [ClinicalStateFrame, TranscriptionFrame, ClinicalStateFrame, TranscriptionFrame]
    first, second = down[0], down[2]
    assert first.final and not first.assessment.escalate
    assert second.assessment.level == Urgency.URGENT  # a mole from turn one, bleeding from turn two
    assert triage.facts.present("bleeding")


async def test_a_phrase_still_being_spoken_is_assessed_without_being_committed() -> None:
    triage = TriageProcessor()
    down, _ = await run_test(
        triage,
        frames_to_send=[InterimTranscriptionFrame(text="my throat is closing", user_id="p", timestamp="")],
    )
    assert down[0].assessment.level == Urgency.EMERGENCY and not down[0].final
    assert not triage.facts.present("breathing_difficulty")


def heard(text: str, avg_logprob: float = -0.2) -> TranscriptionFrame:
    return TranscriptionFrame(
        text=text, user_id="p", timestamp="", finalized=True, result=Heard(text, avg_logprob)
    )


async def test_a_red_flag_misheard_as_another_word_still_escalates() -> None:
    down, _ = await run_test(
        TriageProcessor(), frames_to_send=[heard("There's a lamp on my neck growing fast.")]
    )
    state = down[0]
    assert state.assessment.escalate and "rapidly_growing_lump" in state.assessment.rule_ids
    assert not state.facts.present("lump")  # the interview is told what was said, not the sound-alike


async def test_a_sound_alike_never_undoes_what_the_words_denied() -> None:
    down, _ = await run_test(
        TriageProcessor(),
        frames_to_send=[heard("My son has spots. I did the glass test and it fades right away.")],
    )
    assert not down[0].assessment.escalate


async def test_an_unsure_clinical_turn_is_confirmed_before_the_interview_goes_on() -> None:
    down, _ = await run_test(TriageProcessor(), frames_to_send=[heard("I have a rash on my arm.", -0.95)])
    assert down[0].ask is not None and down[0].ask.kind == AskKind.CONFIRM


async def test_a_red_flag_is_never_held_back_for_a_confirmation() -> None:
    down, _ = await run_test(TriageProcessor(), frames_to_send=[heard("My throat is closing up.", -0.95)])
    assert down[0].assessment.level == Urgency.EMERGENCY and down[0].ask is None


async def test_not_understood_three_times_escalates_and_yes_to_the_offer_asks_for_a_clinician() -> None:
    down, _ = await run_test(
        TriageProcessor(), frames_to_send=[UnclearSpeechFrame(), UnclearSpeechFrame(), UnclearSpeechFrame()]
    )
    states = [f for f in down if isinstance(f, ClinicalStateFrame)]
    assert [s.ask.kind if s.ask else None for s in states] == [AskKind.REPEAT, AskKind.OFFER_CLINICIAN, None]
    assert states[-1].assessment.escalate and states[-1].assessment.rule_ids == ["not_understood"]

    down, _ = await run_test(
        TriageProcessor(), frames_to_send=[UnclearSpeechFrame(), UnclearSpeechFrame(), heard("Yes please.")]
    )
    last = [f for f in down if isinstance(f, ClinicalStateFrame)][-1]
    assert last.assessment.rule_ids == ["asks_for_clinician"]


async def test_a_red_flag_said_in_other_words_escalates_by_meaning() -> None:
    class Near:
        """A detector that finds the turn close to an emergency example."""

        def detect(self, text: str) -> PrototypeMatch:
            return PrototypeMatch("airway_swelling", Urgency.EMERGENCY, "swelling of the lips", 0.9, text)

    down, _ = await run_test(
        TriageProcessor(semantic=Near()),  # type: ignore[arg-type]
        frames_to_send=[heard("Everything in my mouth has gone thick and puffy.")],
    )
    assert down[0].assessment.level == Urgency.EMERGENCY
    assert down[0].assessment.rule_ids == ["airway_swelling"]


async def test_a_draft_turn_is_assessed_for_safety_and_carries_its_state_without_committing() -> None:
    triage = TriageProcessor()
    draft = PreemptiveTurnFrame(text="My mole has started bleeding.", heard=Heard("", -0.2), draft_id=1)
    down, _ = await run_test(triage, frames_to_send=[draft])
    state, passed = down
    assert isinstance(state, ClinicalStateFrame) and not state.final  # the escalation reads it as a phrase
    assert state.assessment.level == Urgency.URGENT
    assert isinstance(passed, PreemptiveTurnFrame) and passed.state is state  # the brain answers with it
    assert not triage.facts.present("bleeding")  # committed only when the turn really ends


async def test_a_draft_the_agent_would_first_ask_about_is_not_answered_ahead() -> None:
    draft = PreemptiveTurnFrame(text="I have a rash on my arm.", heard=Heard("", -1.1), draft_id=1)
    down, _ = await run_test(TriageProcessor(), frames_to_send=[draft])
    assert [type(f) for f in down] == [ClinicalStateFrame]  # assessed, but no draft goes on to the brain
