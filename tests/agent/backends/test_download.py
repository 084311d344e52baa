"""scripts/download_models.sh against a fake hub on 127.0.0.1: every failure is one line with its fix."""

from __future__ import annotations

import asyncio
import errno
import json
import os
from pathlib import Path

from agent.backends.download import explain
from agent.download_failure import FailureKind
from configs.settings import REPO_ROOT
from tests.agent.backends.support import FakeHub, FakeServer

WHISPER = {
    "config.json": b'{"alignment_heads": []}',
    "model.bin": b"\x00" * 2048,
    "tokenizer.json": b'{"model": {}}',
    "vocabulary.txt": b"a\nb\n",
    "README.md": b"not wanted",
}


async def download(endpoint: str, models: Path, *args: str, **hub_env: str) -> tuple[int, str, str]:
    """Run the script as a user would, with a clean huggingface_hub environment (plus ``hub_env``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))}
    env |= {
        "HF_ENDPOINT": endpoint,
        "HF_HOME": str(models.parent / "hf-home"),
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    }
    env |= hub_env
    process = await asyncio.create_subprocess_exec(
        "bash", str(REPO_ROOT / "scripts" / "download_models.sh"), "--models-dir", str(models), *args,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=90)
    return process.returncode or 0, out.decode(), err.decode()


SEE = "(see docs/runbook.md#download-failures)"


def failure_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("download_models:")]


async def test_a_gated_model_without_a_token_says_to_set_hf_token_and_accept_the_licence(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake_server.respond = FakeHub(refuse=(401, "GatedRepo"))
    code, _, err = await download(fake_server.url, tmp_path / "models", "--only", "medgemma")
    assert code == FailureKind.MISSING_CREDENTIALS.exit_status
    assert failure_lines(err) == [
        "download_models: google/medgemma-4b-it is gated (or private) and no HF_TOKEN is set: accept the "
        f"licence at {fake_server.url}/google/medgemma-4b-it, create a read token at "
        f"https://huggingface.co/settings/tokens and export HF_TOKEN {SEE}"
    ]


async def test_a_token_without_the_licence_accepted_says_to_accept_it(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake_server.respond = FakeHub(refuse=(403, "GatedRepo"))
    code, _, err = await download(
        fake_server.url, tmp_path / "models", "--only", "medgemma", HF_TOKEN="hf_test"
    )
    assert code == FailureKind.FORBIDDEN.exit_status
    assert failure_lines(err) == [
        "download_models: 403 from the hub for google/medgemma-4b-it: HF_TOKEN's account has no access: "
        f"accept the licence at {fake_server.url}/google/medgemma-4b-it with that account and wait for "
        f"the approval {SEE}"
    ]
    assert "hf_test" not in err
    assert "/api/models/google/medgemma-4b-it/revision/main" in [r.path for r in fake_server.requests]


async def test_a_missing_repository_says_404_and_the_others_still_download(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake_server.respond = FakeHub(repos={"Systran/faster-whisper-small": WHISPER})
    code, out, err = await download(fake_server.url, tmp_path / "models", "--only", "siglip,whisper")
    assert code == FailureKind.NOT_FOUND.exit_status
    assert failure_lines(err) == [
        "download_models: 404 from the hub for google/siglip-so400m-patch14-384: check the repository "
        f"name and HF_ENDPOINT {SEE}"
    ]
    assert "[download] whisper-small: done" in out


async def test_a_download_is_complete_and_a_rerun_needs_no_network(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake_server.respond = FakeHub(repos={"Systran/faster-whisper-small": WHISPER})
    models = tmp_path / "models"
    code, out, err = await download(fake_server.url, models, "--only", "whisper")
    assert code == 0, err
    target = models / "whisper-small"
    assert (target / "model.bin").read_bytes() == WHISPER["model.bin"]
    assert not (target / "README.md").exists()  # only what the model needs
    recorded = json.loads((target / ".download-complete.json").read_text())["files"]
    assert recorded["model.bin"] == 2048

    code, out, _ = await download("http://127.0.0.1:9", models, "--only", "whisper")  # nothing listens there
    assert code == 0 and "[download] whisper-small: already present" in out


async def test_a_damaged_download_is_fetched_again(fake_server: FakeServer, tmp_path: Path) -> None:
    fake_server.respond = FakeHub(repos={"Systran/faster-whisper-small": WHISPER})
    models = tmp_path / "models"
    assert (await download(fake_server.url, models, "--only", "whisper"))[0] == 0
    (models / "whisper-small" / "model.bin").write_bytes(b"\x00" * 10)  # truncated by a crash or a full disk
    code, out, err = await download(fake_server.url, models, "--only", "whisper")
    assert code == 0, err
    assert "model.bin changed since the download: fetching again" in out
    assert (models / "whisper-small" / "model.bin").read_bytes() == WHISPER["model.bin"]


async def test_a_model_missing_a_weight_shard_is_reported_incomplete(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    files = {
        "config.json": b"{}",
        "model.safetensors.index.json": json.dumps(index).encode(),
        "model-00001-of-00002.safetensors": b"\x00" * 64,
        "preprocessor_config.json": b"{}",
    }
    fake_server.respond = FakeHub(repos={"google/siglip-so400m-patch14-384": files})
    models = tmp_path / "models"
    code, _, err = await download(fake_server.url, models, "--only", "siglip")
    assert code == FailureKind.INTERRUPTED.exit_status
    assert failure_lines(err) == [
        "download_models: the download of google/siglip-so400m-patch14-384 stopped before it was complete "
        "(missing model-00002-of-00002.safetensors): rerun bash scripts/download_models.sh: finished files "
        f"are kept, the others are fetched again {SEE}"
    ]
    assert not (models / "siglip-so400m-patch14-384" / ".download-complete.json").exists()


async def test_piper_voices_land_flat_in_models_piper(fake_server: FakeServer, tmp_path: Path) -> None:
    voice = "en/en_US/amy/medium/en_US-amy-medium"
    files = {f"{voice}.onnx": b"onnx" * 100, f"{voice}.onnx.json": b'{"audio": {"sample_rate": 22050}}'}
    fake_server.respond = FakeHub(repos={"rhasspy/piper-voices": files})
    models = tmp_path / "models"
    code, out, err = await download(
        fake_server.url, models, "--only", "piper", "--voices", "en_US-amy-medium"
    )
    assert code == 0, err
    assert (models / "piper" / "en_US-amy-medium.onnx").read_bytes() == files[f"{voice}.onnx"]
    assert (models / "piper" / "en_US-amy-medium.onnx.json").is_file()
    assert sorted(p.name for p in (models / "piper").iterdir()) == ["en_US-amy-medium.onnx",
                                                                    "en_US-amy-medium.onnx.json"]  # fmt: skip


async def test_no_network_fails_at_once_with_the_fix(tmp_path: Path) -> None:
    code, _, err = await download("http://127.0.0.1:9", tmp_path / "models")
    assert code == FailureKind.NO_NETWORK.exit_status
    fix = "check the network (or HTTPS_PROXY / HF_ENDPOINT) and rerun"
    assert failure_lines(err) == [f"download_models: cannot reach http://127.0.0.1:9: {fix} {SEE}"]


async def test_offline_mode_left_on_says_how_to_turn_it_off(fake_server: FakeServer, tmp_path: Path) -> None:
    fake_server.respond = FakeHub(repos={"Systran/faster-whisper-small": WHISPER})
    code, _, err = await download(
        fake_server.url, tmp_path / "models", "--only", "whisper", TRANSFORMERS_OFFLINE="1"
    )
    assert code == FailureKind.OFFLINE_MODE.exit_status
    assert failure_lines(err) == [
        "download_models: offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE): "
        f"run HF_HUB_OFFLINE=0 bash scripts/download_models.sh {SEE}"
    ]
    assert fake_server.requests == []


def test_a_full_disk_is_explained_with_the_fix(tmp_path: Path) -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    failure = explain(full, "google/medgemma-4b-it", tmp_path / "medgemma-4b-it")
    assert failure.kind is FailureKind.DISK_FULL
    assert failure.line("download_models") == (
        "download_models: not enough disk space for google/medgemma-4b-it (disk full while writing): "
        f"free some space (df -h {tmp_path}) and rerun {SEE}"
    )


async def test_a_misspelt_voice_says_how_voices_are_named(fake_server: FakeServer, tmp_path: Path) -> None:
    fake_server.respond = FakeHub(repos={"rhasspy/piper-voices": {"README.md": b"voices"}})
    models = tmp_path / "models"
    code, _, err = await download(fake_server.url, models, "--only", "piper", "--voices", "en_US-nobody-low")
    assert code == FailureKind.NOT_FOUND.exit_status
    assert failure_lines(err) == [
        "download_models: 404 from the hub for a file of rhasspy/piper-voices: check the name "
        f"(Piper voices are named like en_US-lessac-medium) {SEE}"
    ]
