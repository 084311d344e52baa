"""The retrieval processor: similar cases after each finished turn, never in the way."""

from __future__ import annotations

import logging
import threading
import time

from pipecat.frames.frames import TextFrame
from pipecat.tests.utils import SleepFrame, run_test
from prometheus_client import REGISTRY

from agent.backends.base import CameraImage, RetrievedCase
from agent.facts import extract_facts
from pipeline.frames import CameraStillFrame, ClinicalStateFrame, SimilarCasesFrame
from pipeline.retrieval import RetrievalProcessor, matched_on
from rag.retrieval import query_from_facts

SAID = "My name is Dana Smith and the mole on my back has been bleeding for two weeks."
CASES = [
    RetrievedCase("1", {"Melanoma": 0.6, "Melanocytic Nevus": 0.4}, 0.05, "image"),
    RetrievedCase("2", {"Melanocytic Nevus": 1.0}, 0.3, "text"),
]


class FakeRetriever:
    def __init__(
        self, cases: list[RetrievedCase] | None = None, *, fail: bool = False, delay_s: float = 0.0
    ) -> None:
        self.cases, self.fail, self.delay_s = cases if cases is not None else CASES, fail, delay_s
        self.calls: list[tuple[str, bytes | None, int | None]] = []
        self.threads: list[str] = []

    def search(self, text: str, image_jpeg: bytes | None = None, k: int | None = None) -> list[RetrievedCase]:
        self.calls.append((text, image_jpeg, k))
        self.threads.append(threading.current_thread().name)
        time.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError(f"index exploded while searching {text}")
        return list(self.cases)


def state(text: str = SAID, *, final: bool = True) -> ClinicalStateFrame:
    return ClinicalStateFrame(facts=extract_facts(text), final=final)


def still(jpeg: bytes = b"\xff\xd8jpeg") -> CameraStillFrame:
    return CameraStillFrame(image=CameraImage(jpeg=jpeg, width=4, height=4))


def retrievals(label: str) -> float:
    return REGISTRY.get_sample_value("retrievals_total", {"matched_on": label}) or 0.0


async def test_a_final_state_brings_similar_cases_after_it() -> None:
    retriever = FakeRetriever()
    before = retrievals("image+text")
    frame = state()
    down, _ = await run_test(RetrievalProcessor(retriever, k=5), frames_to_send=[still(), frame])
    kinds = [type(f) for f in down]
    assert kinds == [CameraStillFrame, ClinicalStateFrame, SimilarCasesFrame]
    similar = down[-1]
    assert similar.cases == CASES and similar.query == query_from_facts(frame.facts)
    assert retriever.calls == [(similar.query, b"\xff\xd8jpeg", 5)]
    assert retriever.threads[0] != threading.main_thread().name  # searched off the event loop
    assert "Dana" not in similar.query and "bleeding" in similar.query
    assert retrievals("image+text") == before + 1


async def test_provisional_states_and_empty_facts_do_not_search() -> None:
    retriever = FakeRetriever()
    down, _ = await run_test(
        RetrievalProcessor(retriever, k=5), frames_to_send=[state(final=False), state("Hello there.")]
    )
    assert retriever.calls == [] and not any(isinstance(f, SimilarCasesFrame) for f in down)
    assert sum(isinstance(f, ClinicalStateFrame) for f in down) == 2


async def test_a_revised_state_is_the_same_turn_and_does_not_search_again() -> None:
    retriever = FakeRetriever()
    revised = ClinicalStateFrame(facts=extract_facts(SAID), final=True, revised=True)
    down, _ = await run_test(RetrievalProcessor(retriever, k=5), frames_to_send=[revised])
    assert retriever.calls == [] and [type(f) for f in down] == [ClinicalStateFrame]


async def test_a_photo_alone_is_enough_to_search() -> None:
    retriever = FakeRetriever([CASES[0]])
    down, _ = await run_test(
        RetrievalProcessor(retriever, k=3), frames_to_send=[still(b"photo"), state("Hello.")]
    )
    assert retriever.calls == [("", b"photo", 3)]
    assert isinstance(down[-1], SimilarCasesFrame) and down[-1].cases == [CASES[0]]


async def test_a_failing_search_is_logged_without_patient_text_and_the_frames_go_on(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    before = retrievals("none")
    down, _ = await run_test(
        RetrievalProcessor(FakeRetriever(fail=True), k=5), frames_to_send=[state(), TextFrame("next")]
    )
    assert [type(f) for f in down] == [ClinicalStateFrame, TextFrame]
    assert "similar-case search failed (RuntimeError)" in caplog.text
    assert "Dana" not in caplog.text and "mole" not in caplog.text
    assert retrievals("none") == before


async def test_a_slow_search_does_not_hold_up_later_frames_and_still_arrives() -> None:
    down, _ = await run_test(
        RetrievalProcessor(FakeRetriever(delay_s=0.3), k=5),
        frames_to_send=[state(), TextFrame("the agent keeps talking")],
    )
    assert [type(f) for f in down] == [ClinicalStateFrame, TextFrame, SimilarCasesFrame]


async def test_a_search_that_hangs_times_out_quietly() -> None:
    down, _ = await run_test(
        RetrievalProcessor(FakeRetriever(delay_s=1.0), k=5, timeout_s=0.1, end_wait_s=0.5),
        frames_to_send=[state(), SleepFrame(sleep=0.3)],
    )
    assert not any(isinstance(f, SimilarCasesFrame) for f in down)


async def test_a_newer_turn_supersedes_a_search_in_flight() -> None:
    retriever = FakeRetriever(delay_s=0.2)
    first, second = state(), state("I have an itchy rash on my arm.")
    down, _ = await run_test(RetrievalProcessor(retriever, k=5), frames_to_send=[first, second])
    similar = [f for f in down if isinstance(f, SimilarCasesFrame)]
    assert [f.query for f in similar] == [query_from_facts(second.facts)]


def test_the_metric_label_names_the_indexes_that_matched() -> None:
    assert matched_on(CASES) == "image+text"
    assert matched_on(CASES[1:]) == "text"
    assert matched_on([]) == "none"
