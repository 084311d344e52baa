"""The local models end to end: a replayed conversation through MedGemma, SigLIP and Whisper.

    MODEL_BACKEND=local uv run pytest tests/integration/test_local_models.py -v    # the runbook's step 13
    MODEL_BACKEND=local .venv/bin/python -m pytest tests/integration/test_local_models.py -v

The conversation goes through the reviewers' replay command (``python -m pipeline.replay WAV...
--image PHOTO --out DIR``) with ``MODEL_BACKEND=local``: Whisper transcribes the patient's
recorded turns, the photo is the camera, SigLIP embeds it for the similar-case search, MedGemma
answers in-process. The weights are whatever ``models/`` holds (``docs/models.md``); without the
downloaded MedGemma and SigLIP (CI, a workstation), tiny random-weight models of the same
architectures are built and run on the CPU, which proves every loading and inference path but
not the words. With the real weights, the answers are checked as well.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.backends import create_backend
from agent.backends.medgemma import MedGemmaBackend
from configs.settings import REPO_ROOT, Settings, load_settings
from tests.integration.conftest import LocalModels

BENIGN = "I have a red itchy rash on my left forearm."
RED_FLAG = "My name is John Smith and the mole on my back has started bleeding."


@dataclass(frozen=True)
class Replayed:
    result: dict
    log: str
    escalations: list[dict]


def test_model_backend_local_is_read_through_the_settings_and_builds_medgemma(
    local_models: LocalModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the runbook's ``MODEL_BACKEND=local`` does: the settings pick the in-process MedGemma."""
    monkeypatch.setenv("MODEL_BACKEND", "local")
    monkeypatch.setenv("LLM__MEDGEMMA_MODEL_ID", str(local_models.medgemma))
    settings = load_settings()
    assert settings.model_backend == "local"
    backend = create_backend(settings)
    assert isinstance(backend, MedGemmaBackend)
    assert Path(backend.model_id()) == local_models.medgemma


@pytest.fixture(scope="module")
def index(local_models: LocalModels, configured: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SCIN fixture cases indexed with MiniLM (text) and this run's SigLIP (photos)."""
    from rag.cases import load_cases
    from rag.image_encoder import ImageEncoder
    from rag.index import build_index
    from rag.scin import convert
    from rag.store import CaseStore
    from rag.text_encoder import TextEncoder
    from tests.rag.conftest import FIXTURES, write_photos

    root = tmp_path_factory.mktemp("scin")
    convert(FIXTURES, root / "scin")
    cases = load_cases(root / "scin" / "metadata.json")
    write_photos(root / "scin", cases)
    text = TextEncoder(configured.path(configured.embedding.text_model_dir))
    report = build_index(
        cases, root / "scin", CaseStore(root / "db"), text, ImageEncoder(local_models.siglip), progress=False
    )
    assert report.images_added > 0
    return root


@pytest.fixture(scope="module")
def replayed(local_models: LocalModels, index: Path, tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    from media.synth import synthesize
    from tests.rag.conftest import jpeg_bytes

    work = tmp_path_factory.mktemp("replay")
    turns = [
        synthesize(text, work / f"turn{i}.wav", lead_s=0.3, tail_s=0.5)
        for i, text in enumerate((BENIGN, RED_FLAG))
    ]
    photo = work / "arm.jpg"
    photo.write_bytes(jpeg_bytes("the patient's forearm"))
    local = {
        "MODEL_BACKEND": "local",  # read by the replay's settings, as the server reads it
        "EMBEDDING__MODEL_ID": str(local_models.siglip),
        "VECTOR_STORE_DIR": str(index / "db"),
        "SCIN_DIR": str(index / "scin"),
        "ESCALATIONS_DIR": str(work / "escalations"),
        "LOG_LEVEL": "INFO",
    }
    if not local_models.medgemma_is_real:
        # The tiny model: short replies, on the CPU (random weights never end a sentence).
        local |= {
            "LLM__MEDGEMMA_MODEL_ID": str(local_models.medgemma),
            "LLM__DEVICE": "cpu",
            "LLM__MAX_NEW_TOKENS": "24",
        }
    out = work / "out"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.replay", *map(str, turns), "--image", str(photo), "--out", str(out)],
        env={**os.environ, **local},  # this shell's settings (LLM__DEVICE, MODELS_DIR ...) plus the above
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    escalations = [json.loads(p.read_text()) for p in sorted((work / "escalations").glob("*.json"))]
    return Replayed(
        json.loads((out / "result.json").read_text()), (out / "session.log").read_text(), escalations
    )


def said(replayed: Replayed, role: str) -> list[str]:
    return [t["text"] for t in replayed.result["turns"] if t["role"] == role]


@pytest.mark.slow
def test_the_replay_ran_on_the_local_medgemma(replayed: Replayed) -> None:
    assert replayed.result["backend"] == "local"
    assert "backend=local" in replayed.log


@pytest.mark.slow
def test_whisper_heard_both_turns(replayed: Replayed) -> None:
    patient = " ".join(said(replayed, "patient")).lower()
    assert "rash" in patient and "forearm" in patient
    assert "mole" in patient and "bleeding" in patient


@pytest.mark.slow
def test_siglip_searched_similar_cases_with_the_photo(replayed: Replayed) -> None:
    searches = [line for line in replayed.log.splitlines() if "similar cases:" in line]
    assert any("image" in line for line in searches), searches


@pytest.mark.slow
def test_the_red_flag_is_escalated_by_the_policy_with_the_disclaimer_said_and_no_name_written(
    replayed: Replayed,
) -> None:
    escalation = replayed.result["escalation"]
    assert escalation is not None and escalation["level"] in ("urgent", "emergency")
    [record] = replayed.escalations
    assert "changing_mole" in record["rule_ids"]  # the red flag itself, not a failing model
    assert any(t["disclaimer"] for t in replayed.result["turns"] if t["role"] == "agent")
    written = json.dumps(replayed.result) + replayed.log + json.dumps(replayed.escalations)
    assert "John" not in written and "Smith" not in written


@pytest.mark.slow
def test_medgemma_answered_the_first_turn(replayed: Replayed, local_models: LocalModels) -> None:
    # The greeting, then MedGemma's answer to the rash before the escalation.
    agent = said(replayed, "agent")
    assert len(agent) >= 2 and agent[1].strip()
    assert len(replayed.result["latency_ms"]) == 2  # both turns answered
    if not local_models.medgemma_is_real:
        pytest.skip("tiny random-weight MedGemma: its words are noise (download the weights: docs/models.md)")
    words = agent[1].split()
    assert 3 <= len(words) <= 120, agent[1]  # a spoken reply, not silence or a lecture
    assert "?" in agent[1], agent[1]  # an intake: it asks the next question
