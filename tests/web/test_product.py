"""The composition root: every way into the product runs the same session with the same settings."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from pipecat.processors.frame_processor import FrameProcessor

from agent.channel import Channel
from configs.settings import Settings
from pipeline.camera import CameraSampler
from pipeline.session import listening_processors
from web.product import Product, build_product

# Per-session identity, not configuration: each session has its own.
IDENTITY = {"_id", "_name", "name", "id", "_session_id", "session_id", "_channel"}


def configuration(processor: FrameProcessor) -> dict[str, Any]:
    """A processor's settings as plain values: what must not differ between entry points."""
    plain = (bool, int, float, str, Enum)
    return {
        key: value
        for key, value in vars(processor).items()
        if isinstance(value, plain) and key not in IDENTITY
    }


def text_half(processors: list[FrameProcessor], product: Product) -> list[FrameProcessor]:
    """The spoken session without its ears (VAD, STT), eyes (camera) and voice (TTS and the reply
    gate, the last two)."""
    ears = len(listening_processors(product.settings))
    return [p for p in processors[ears:-2] if not isinstance(p, CameraSampler)]


def sessions(product: Product) -> dict[str, list[FrameProcessor]]:
    host = product.host
    return {
        "browser": host.session_processors(host.context("browser", Channel.VIDEO)),
        "phone": host.session_processors(host.context("phone", Channel.AUDIO)),
        "replay": host.session_processors(host.context("replay", Channel.AUDIO)),
        "evaluation": host.text_processors(host.context("evaluation", Channel.AUDIO)),
    }


def test_browser_phone_replay_and_evaluation_run_the_same_processors_with_the_same_settings(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(
        update={"safety": settings.safety.model_copy(update={"emergency_number": "112"})}
    )
    product = build_product(settings)
    built = sessions(product)
    halves = {
        name: (built[name] if name == "evaluation" else text_half(built[name], product)) for name in built
    }
    kinds = {name: [type(p).__name__ for p in half] for name, half in halves.items()}
    assert kinds["browser"] == kinds["phone"] == kinds["replay"] == kinds["evaluation"], kinds
    assert "TriageProcessor" in kinds["browser"] and "BrainProcessor" in kinds["browser"]
    for position, reference in enumerate(halves["browser"]):
        for name in ("phone", "replay", "evaluation"):
            assert configuration(halves[name][position]) == configuration(reference), (name, reference)
    # The settings reach the safety layer on every path (the emergency number is what it says).
    said = [v for half in halves.values() for p in half for v in vars(p).values() if v == "112"]
    assert len(said) >= 4
    assert isinstance(built["browser"][len(listening_processors(settings))], CameraSampler)
    assert not any(isinstance(p, CameraSampler) for p in built["phone"])


def test_the_server_and_the_phone_bridge_share_one_session_host(settings: Settings) -> None:
    enabled = settings.model_copy(
        update={"sip": settings.sip.model_copy(update={"enabled": True, "host": "127.0.0.1", "port": 0})}
    )
    product = build_product(enabled)
    assert product.phone is not None and product.phone.host is product.host  # calls run like browser sessions
    assert product.host.rooms is product.rooms  # a call gets a room a clinician can join
    assert build_product(settings).phone is None
    assert build_product(settings, phone=True).phone is not None  # python -m web.phone


async def test_an_evaluated_conversation_escalates_through_the_queue_and_is_stored_once(
    settings: Settings,
) -> None:
    from agent.escalation import EscalationStore
    from pipeline.text_session import run_text_session

    product = build_product(settings)
    host = product.host
    try:
        processors = host.text_processors(host.context("eval-1", Channel.AUDIO))
        result = await run_text_session(
            processors, ["My mole has started bleeding."], observers=host.observers()
        )
    finally:
        await product.stop()
    assert result.escalation is not None
    [record] = product.queue.list()  # the clinician console sees it
    stored = EscalationStore(settings.path(settings.escalations_dir)).all()
    assert [r.id for r in stored] == [record.id]  # stored once, by the queue
