"""The runbook's download failures, one test per row, against a fake hub on 127.0.0.1.

Each test runs ``scripts/download_models.sh`` as an operator would and asserts the exact line on
stderr and the exit status; the last tests check that docs/runbook.md's "Download failures" table
lists every line either script can print (``MESSAGES`` of both), with the right status.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from agent.backends.download import MESSAGES as MODEL_MESSAGES
from agent.backends.download import SCRIPT as MODELS
from agent.download_failure import FailureKind
from configs.settings import REPO_ROOT
from rag.download_messages import MESSAGES as SCIN_MESSAGES
from rag.download_messages import SCRIPT as SCIN
from tests.agent.backends.support import FakeHub, FakeServer
from tests.agent.backends.test_download import SEE, WHISPER, download, failure_lines

RUNBOOK = REPO_ROOT / "docs" / "runbook.md"


@dataclass
class CuttingHub(FakeHub):
    """A hub whose downloads of ``cut`` drop the connection after the headers (each time, while set)."""

    cut: str | None = None

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        if self.cut and request.method == "GET" and request.path.endswith(f"/{self.cut}"):
            size = len(next(files[self.cut] for files in self.repos.values() if self.cut in files))
            response = web.StreamResponse(headers={"Content-Length": str(size), "X-Repo-Commit": self.commit})
            await response.prepare(request)
            await response.write(b"\0" * 16)
            assert request.transport is not None
            request.transport.close()  # mid-body: the client sees a protocol error, not a clean end
            return response
        return await super().__call__(request)


async def test_401_with_a_rejected_token_says_to_create_a_new_one_and_never_prints_it(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake_server.respond = FakeHub(refuse=(401, "Unauthorized"))
    code, out, err = await download(
        fake_server.url, tmp_path / "models", "--only", "medgemma", HF_TOKEN="hf_revoked_secret_123"
    )
    assert code == FailureKind.UNAUTHORIZED.exit_status == 11
    assert failure_lines(err) == [
        "download_models: 401 from the hub for google/medgemma-4b-it: HF_TOKEN was rejected: create a new "
        f"read token at https://huggingface.co/settings/tokens and export HF_TOKEN {SEE}"
    ]
    assert "hf_revoked_secret_123" not in err + out


async def test_a_hub_outage_says_to_rerun_later(fake_server: FakeServer, tmp_path: Path) -> None:
    fake_server.respond = FakeHub(refuse=(503, "ServiceUnavailable"))
    code, _, err = await download(fake_server.url, tmp_path / "models", "--only", "siglip")
    assert code == FailureKind.SERVER_ERROR.exit_status
    assert failure_lines(err) == [
        "download_models: 503 from the hub for google/siglip-so400m-patch14-384: the hub is having "
        f"trouble: rerun later {SEE}"
    ]


async def test_a_dropped_connection_leaves_nothing_that_looks_complete_and_a_rerun_finishes(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    hub = CuttingHub(repos={"Systran/faster-whisper-small": WHISPER}, cut="model.bin")
    fake_server.respond = hub
    models = tmp_path / "models"
    code, _, err = await download(
        fake_server.url, models, "--only", "whisper"
    )  # hub retries 5 times, 1 s apart
    assert code == FailureKind.INTERRUPTED.exit_status == 17
    assert failure_lines(err) == [
        "download_models: the download of Systran/faster-whisper-small stopped before it was complete "
        "(RemoteProtocolError: the connection dropped): rerun bash scripts/download_models.sh: finished "
        f"files are kept, the others are fetched again {SEE}"
    ]
    target = models / "whisper-small"
    assert not (target / "model.bin").exists()
    assert not (target / ".download-complete.json").exists()
    assert not [p for p in target.rglob("*") if p.is_file() and p.stat().st_size == 16]  # no partial left

    hub.cut = None  # the network is back
    code, out, err = await download(fake_server.url, models, "--only", "whisper")
    assert code == 0, err
    assert (target / "model.bin").read_bytes() == WHISPER["model.bin"]
    assert "[download] whisper-small: done" in out


async def test_no_python_environment_says_to_run_setup(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(
        REPO_ROOT / "scripts" / "download_models.sh", tmp_path / "scripts"
    )  # a checkout without .venv
    process = await asyncio.create_subprocess_exec(
        "bash", str(tmp_path / "scripts" / "download_models.sh"), "--only", "whisper",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == FailureKind.MISSING_CLI.exit_status == 14
    assert err.decode() == MODEL_MESSAGES["no_python"].render().line(MODELS) + "\n"
    assert err.decode() == (
        f"download_models: no Python environment at .venv/bin/python: run bash scripts/setup.sh first {SEE}\n"
    )


async def test_a_venv_without_huggingface_hub_names_the_package(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake_server.respond = FakeHub(repos={"Systran/faster-whisper-small": WHISPER})
    shadow = tmp_path / "shadow" / "huggingface_hub"
    shadow.mkdir(parents=True)  # found before site-packages: as if pip never installed it
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'huggingface_hub'\", name='huggingface_hub')\n"
    )
    code, _, err = await download(
        fake_server.url, tmp_path / "models", "--only", "whisper,siglip", PYTHONPATH=str(tmp_path / "shadow")
    )
    assert code == FailureKind.MISSING_CLIENT.exit_status == 15
    assert failure_lines(err) == [  # one line, not one per model
        "download_models: the Python package huggingface_hub is not installed in .venv: run bash "
        f"scripts/setup.sh, then bash scripts/download_models.sh again {SEE}"
    ]
    assert fake_server.requests == []


# --- the runbook's table ---------------------------------------------------------------------------


def runbook_rows() -> dict[str, int]:
    """Each message of the "Download failures" table -> the exit status its row gives."""
    text = RUNBOOK.read_text()
    section = text[text.index("### Download failures") :]
    section = section[: section.index("\n#", 1)] if "\n#" in section[1:] else section
    rows: dict[str, int] = {}
    for line in section.splitlines():
        match = re.match(r"\| (\d+) \| `([^`]+)` \|", line)
        if match:
            rows[match.group(2)] = int(match.group(1))
    return rows


@pytest.mark.parametrize(
    ("script", "key"),
    [(MODELS, key) for key in MODEL_MESSAGES] + [(SCIN, key) for key in SCIN_MESSAGES],
)
def test_the_runbook_lists_every_message_with_its_exit_status(script: str, key: str) -> None:
    message = (MODEL_MESSAGES if script == MODELS else SCIN_MESSAGES)[key]
    rows = runbook_rows()
    assert message.documented(script) in rows, f"docs/runbook.md has no row for {message.documented(script)}"
    assert rows[message.documented(script)] == message.kind.exit_status


def test_the_runbook_lists_nothing_the_scripts_do_not_print() -> None:
    printed = {m.documented(MODELS) for m in MODEL_MESSAGES.values()}
    printed |= {m.documented(SCIN) for m in SCIN_MESSAGES.values()}
    assert set(runbook_rows()) == printed


def test_every_exit_status_is_its_own_and_none_is_argparse_or_bash() -> None:
    statuses = [kind.exit_status for kind in FailureKind]
    assert len(set(statuses)) == len(statuses)
    assert not {0, 1, 2, 126, 127} & set(statuses)
    assert FailureKind.STOPPED.exit_status == 130  # what a shell reports after Ctrl-C anyway
