"""Replay a conversation from recorded patient audio: the contract of tests and evaluations.

    python -m tools.replay PATIENT.wav [MORE.wav ...] [--image PHOTO] --out DIR

Each WAV is one patient turn, played in real time once the agent's previous reply has
finished. Writes ``DIR/result.json``, ``DIR/conversation.wav`` (patient left, agent right)
and ``DIR/session.log``. A missing, empty or non-audio input exits with status 2 and a
one-line error, before anything is written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
from pipecat.frames.frames import EndFrame

from agent.backends.base import BrainBackend
from agent.channel import Channel
from agent.pii import redact
from agent.redacted_logs import setup_redacted_logging
from configs.logs import make_handler, quiet_libraries, session_id_var
from configs.settings import ConfigError, Settings, hub_offline_environment, load_settings
from media.audio_files import AudioInputError, read_mono_int16, resample_int16, speech_bounds
from media.file_transport import FileReplayTransport, PatientTurnAudio
from media.host import Transport
from media.images import ImageInputError, load_still
from pipeline.heap import collect_ended_session
from pipeline.observers import TranscriptObserver
from pipeline.result import build_result
from pipeline.session import INPUT_RATE
from web.product import build_product

OUTPUT_RATE = 16000
log = logging.getLogger("tools.replay")


# A patient who answers: given what the agent said since the patient's last turn and whether
# it has escalated, the next turn's 16 kHz samples, or None when the patient is done.
Responder = Callable[[str, bool], Awaitable[np.ndarray | None]]
MAX_ANSWERED_TURNS = 8


def patient_turn(samples: np.ndarray, name: str) -> PatientTurnAudio:
    start, end = speech_bounds(samples, INPUT_RATE)
    if end <= start:
        raise AudioInputError(f"{name}: the file holds only silence")
    return PatientTurnAudio(samples, start, end)


def load_turns(wavs: list[Path]) -> list[PatientTurnAudio]:
    """Read every turn first, so that a bad input fails before anything runs."""
    return [patient_turn(read_mono_int16(path, INPUT_RATE), str(path)) for path in wavs]


async def run_replay(
    wavs: list[Path],
    out_dir: Path,
    image: Path | None = None,
    settings: Settings | None = None,
    backend: BrainBackend | None = None,
    next_turn: Responder | None = None,
) -> dict[str, Any]:
    """Play the turns through a full session and write the outputs; returns result.json's data.

    With ``next_turn``, the patient goes on answering the agent after the recorded turns.
    """
    settings = settings or load_settings()
    turns = load_turns(wavs)
    still = load_still(image) if image is not None else None
    product = build_product(settings, make_backend=(lambda: backend) if backend else None, phone=False)
    backend_name = product.first_backend.name
    await product.warm_up()
    out_dir.mkdir(parents=True, exist_ok=True)

    session_id = uuid.uuid4().hex[:12]
    token = session_id_var.set(session_id)
    handler = make_handler(out_dir / "session.log", settings.log_format, redact)
    handler.setLevel(settings.log_level.upper())
    root = logging.getLogger()
    root_level = root.level
    root.setLevel(min(root_level or logging.WARNING, handler.level))  # the server's lines reach the file
    root.addHandler(handler)
    quiet_libraries()
    try:
        transcript = TranscriptObserver()

        async def answer() -> PatientTurnAudio | None:
            assert next_turn is not None
            events = transcript.events
            last_patient = max((i for i, e in enumerate(events) if e.kind == "patient"), default=-1)
            said = " ".join(e.text for e in events[last_patient + 1 :] if e.kind == "agent")
            escalated = any(e.kind == "escalation" for e in events)
            samples = await next_turn(said, escalated)
            return None if samples is None else patient_turn(samples, "answer")

        transport = FileReplayTransport(
            turns,
            input_rate=INPUT_RATE,
            output_rate=OUTPUT_RATE,
            image=still,
            next_turn=answer if next_turn is not None else None,
        )
        # Without a photo the replayed patient has no camera: the agent asks for a description.
        live = await product.host.start(
            transport,
            kind=Transport.REPLAY,
            channel=Channel.VIDEO if still else Channel.AUDIO,
            session_id=session_id,
            output_rate=OUTPUT_RATE,
            observers=[transcript],
            idle_timeout_s=None,
        )
        log.info("replay session started: %d patient turns, backend=%s", len(turns), backend_name)
        answered = MAX_ANSWERED_TURNS if next_turn is not None else 0
        budget = sum(t.samples.size for t in turns) / INPUT_RATE + 25.0 * (len(turns) + answered + 1)

        async def end_when_done() -> None:
            try:
                await asyncio.wait_for(transport.timeline.finished.wait(), timeout=budget)
            except TimeoutError:
                log.warning("replay did not finish within %.0f s; ending it", budget)
            await live.worker.queue_frame(EndFrame())

        ender = asyncio.create_task(end_when_done())
        await live.wait()
        ender.cancel()
        result = build_result(backend_name, transport.timeline, transcript.events)
        log.info(
            "replay session ended: %d turns, escalation=%s",
            len(result["turns"]),
            (result["escalation"] or {}).get("level"),
        )
    finally:
        await product.stop()
        root.removeHandler(handler)
        root.setLevel(root_level)
        handler.close()
        session_id_var.reset(token)

    (out_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    _write_conversation(out_dir / "conversation.wav", transport)
    collect_ended_session()  # this function held the session to the end: free it now
    return result


def _write_conversation(path: Path, transport: FileReplayTransport) -> None:
    from media.audio_files import write_stereo

    timeline = transport.timeline

    def render(pieces: list[tuple[float, np.ndarray]], rate: int) -> np.ndarray:
        if not pieces:
            return np.zeros(0, dtype=np.int16)
        end = max(int(t * rate) + p.size for t, p in pieces)
        track = np.zeros(end, dtype=np.int16)
        for t, piece in pieces:
            start = int(t * rate)
            track[start : start + piece.size] = piece
        return track

    patient = render(timeline.patient_audio, timeline.input_rate)
    agent = resample_int16(
        render(timeline.agent_audio, timeline.agent_rate or OUTPUT_RATE),
        timeline.agent_rate or OUTPUT_RATE,
        INPUT_RATE,
    )
    write_stereo(path, patient, agent, INPUT_RATE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.replay", description=__doc__.splitlines()[0])
    parser.add_argument("wavs", nargs="+", type=Path, metavar="PATIENT.wav")
    parser.add_argument("--image", type=Path, help="a still photo fed as the camera")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    args = parser.parse_args(argv)
    hub_offline_environment()
    try:
        settings = load_settings()
        load_turns(args.wavs)
        if args.image is not None:
            load_still(args.image)
    except (AudioInputError, ImageInputError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    setup_redacted_logging(settings.log_level, settings.log_format)
    result = asyncio.run(run_replay(args.wavs, args.out, args.image, settings))
    print(
        json.dumps(
            {
                "out": str(args.out),
                "turns": len(result["turns"]),
                "escalation": result["escalation"],
                "latency_ms": result["latency_ms"],
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
