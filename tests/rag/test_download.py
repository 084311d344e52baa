"""The SCIN downloader against a local stand-in for the bucket (this machine cannot reach it).

Every failure is asserted as the exact line a user reads on stderr and the exit status a script
can branch on (docs/runbook.md, "Download failures").
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agent.download_failure import FailureKind
from rag.download import main
from rag.download_messages import MESSAGES, SCRIPT
from rag.fetch import FetchError, fetch, image_problem
from tests.rag.conftest import FIXTURES, MOLE, png_bytes
from tests.rag.http_server import BucketServer

REPO = Path(__file__).resolve().parents[2]
MISSING = "-2222222222222222222.png"  # the acne case's photo: the bucket does not have it
MOLE_PNG = "/dataset/images/-5090473722737044187.png"
SEE = "(see docs/runbook.md#download-failures)"
DEFAULT = "https://storage.googleapis.com/dx-scin-public-data/dataset"


def bucket_files() -> dict[str, bytes]:
    files = {
        f"/dataset/{name}": (FIXTURES / name).read_bytes() for name in ("scin_cases.csv", "scin_labels.csv")
    }
    for line in (FIXTURES / "scin_cases.csv").read_text().splitlines():
        for cell in line.split(","):
            if cell.startswith("dataset/images/") and not cell.endswith(MISSING):
                files[f"/{cell}"] = png_bytes(Path(cell).stem)
    return files


@pytest.fixture
def bucket() -> Iterator[BucketServer]:
    with BucketServer(bucket_files()) as server:
        yield server


def run(bucket: BucketServer, out: Path, *extra: str) -> int:
    return main(
        [
            "--out",
            str(out),
            "--base-url",
            f"{bucket.url}/dataset",
            "--no-progress",
            "--retries",
            "0",
            "--workers",
            "2",
            *extra,
        ]
    )


def test_download_converts_saves_verified_images_and_lists_what_the_bucket_lacks(
    bucket: BucketServer, tmp_path: Path, capsys
) -> None:
    assert run(bucket, tmp_path) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cases"] == 9 and report["labelled"] == 6 and report["images_listed"] == 10
    assert report["images"] == {"downloaded": 9, "missing": 1}
    assert (tmp_path / "missing_images.txt").read_text() == f"images/{MISSING}\n"
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert [case["case_id"] for case in metadata][1] == MOLE
    for path, data in bucket.files.items():
        if "/images/" in path:
            assert (tmp_path / "images" / Path(path).name).read_bytes() == data
    assert not list(tmp_path.rglob("*.part"))


def test_a_second_run_fetches_nothing(bucket: BucketServer, tmp_path: Path, capsys) -> None:
    assert run(bucket, tmp_path) == 0
    before = len(bucket.requests)
    assert run(bucket, tmp_path) == 0
    new = [path for path, _ in bucket.requests[before:]]
    assert new == [f"/dataset/images/{MISSING}"]  # only what is still missing is asked for again
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["images"] == {"present": 9, "missing": 1}


def test_an_interrupted_download_resumes_where_it_stopped(
    bucket: BucketServer, tmp_path: Path, capsys
) -> None:
    bucket.cut[MOLE_PNG] = 50  # the connection drops after 50 bytes
    assert run(bucket, tmp_path) == FailureKind.INTERRUPTED.exit_status == 17
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "download_scin: download of -5090473722737044187.png interrupted after 50 bytes "
        f"(RemoteProtocolError): re-run the same command: it resumes from there {SEE}"
    )
    part = tmp_path / "images" / "-5090473722737044187.png.part"
    assert part.stat().st_size == 50
    assert not (tmp_path / "images" / "-5090473722737044187.png").exists()  # nothing looks complete

    assert run(bucket, tmp_path) == 0
    assert (MOLE_PNG, "bytes=50-") in bucket.requests
    assert (tmp_path / "images" / "-5090473722737044187.png").read_bytes() == bucket.files[MOLE_PNG]
    assert not part.exists()


def test_a_retry_within_the_run_resumes_too(bucket: BucketServer, tmp_path: Path) -> None:
    bucket.cut[MOLE_PNG] = 30
    assert (
        main(
            ["--out", str(tmp_path), "--base-url", f"{bucket.url}/dataset", "--no-progress", "--retries", "1"]
        )
        == 0
    )
    assert [r for p, r in bucket.requests if p == MOLE_PNG] == [None, "bytes=30-"]
    assert image_problem(tmp_path / "images" / "-5090473722737044187.png") is None


def test_a_damaged_saved_image_is_fetched_again(bucket: BucketServer, tmp_path: Path) -> None:
    assert run(bucket, tmp_path) == 0
    saved = tmp_path / "images" / "-5090473722737044187.png"
    saved.write_bytes(saved.read_bytes()[:40])  # e.g. a copy cut short by another tool
    assert run(bucket, tmp_path) == 0
    assert saved.read_bytes() == bucket.files[MOLE_PNG]


def test_skip_images_and_limit(bucket: BucketServer, tmp_path: Path, capsys) -> None:
    assert run(bucket, tmp_path / "a", "--skip-images") == 0
    assert not any("/images/" in path for path, _ in bucket.requests)
    assert len(json.loads((tmp_path / "a" / "metadata.json").read_text())) == 9
    assert run(bucket, tmp_path / "b", "--limit", "2") == 0
    assert len(json.loads((tmp_path / "b" / "metadata.json").read_text())) == 2
    assert sorted(p.name for p in (tmp_path / "b" / "images").iterdir()) == [
        "-3205742176803893704.png",
        "-4762289084741430925.png",
        "-5090473722737044187.png",
    ]


@pytest.mark.parametrize(
    ("setup", "line", "kind"),
    [
        (
            lambda b: b.status.update({"/dataset/scin_labels.csv": 401}),
            "401 from the bucket for scin_labels.csv: the SCIN bucket is public and needs no credentials: "
            "check --base-url, or ask your network admin whether a proxy wants a login",
            FailureKind.UNAUTHORIZED,
        ),
        (
            lambda b: b.status.update({"/dataset/scin_labels.csv": 403}),
            "403 from the bucket for scin_labels.csv: the SCIN bucket is public and needs no credentials: "
            "check --base-url, or ask your network admin whether a proxy blocks it",
            FailureKind.FORBIDDEN,
        ),
        (
            lambda b: b.status.update({MOLE_PNG: 403}),  # an image refused stops the run too
            "403 from the bucket for -5090473722737044187.png: the SCIN bucket is public and needs no "
            "credentials: check --base-url, or ask your network admin whether a proxy blocks it",
            FailureKind.FORBIDDEN,
        ),
        (
            lambda b: b.files.pop("/dataset/scin_cases.csv"),
            "404 from the bucket for scin_cases.csv at {url}/dataset/scin_cases.csv: "
            f"check --base-url (default {DEFAULT})",
            FailureKind.NOT_FOUND,
        ),
        (
            lambda b: b.status.update({"/dataset/scin_cases.csv": 407}),
            "the proxy asks for credentials (HTTP 407) for scin_cases.csv: "
            "put them in HTTPS_PROXY (http://USER:PASSWORD@HOST:PORT) and re-run",
            FailureKind.MISSING_CREDENTIALS,
        ),
        (
            lambda b: b.status.update({"/dataset/scin_cases.csv": 503}),
            "503 from the bucket for scin_cases.csv: the server failed (retried): wait a minute and re-run",
            FailureKind.SERVER_ERROR,
        ),
        (
            lambda b: b.files.update({"/dataset/scin_cases.csv": b"<!DOCTYPE html><html>login</html>"}),
            "scin_cases.csv failed verification (an HTML page, not a CSV: a proxy or captive portal "
            "answered): it was deleted; re-run to fetch it again",
            FailureKind.BAD_CONTENT,
        ),
        (
            lambda b: b.files.update({MOLE_PNG: b"GIF89a" + b"\0" * 64}),
            "-5090473722737044187.png failed verification (not a PNG or JPEG file): it was deleted; "
            "re-run to fetch it again",
            FailureKind.BAD_CONTENT,
        ),
    ],
)
def test_each_failure_is_one_line_with_its_fix_and_its_own_exit_status(
    bucket: BucketServer, tmp_path: Path, capsys, setup, line: str, kind: FailureKind
) -> None:
    setup(bucket)
    assert run(bucket, tmp_path) == kind.exit_status
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"download_scin: {line.format(url=bucket.url)} {SEE}"
    assert not [line for line in err if line.startswith(("Traceback", "error"))]


def test_a_corrupt_csv_on_the_server_says_how_to_fetch_it_again(
    bucket: BucketServer, tmp_path: Path, capsys
) -> None:
    bucket.files["/dataset/scin_labels.csv"] = b"case_id,weighted_skin_condition_label\n1,\"{'A'\n"
    assert run(bucket, tmp_path) == FailureKind.BAD_CONTENT.exit_status
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("download_scin: the SCIN files are not usable: scin_labels.csv is corrupt")
    assert err.endswith(SEE)


def test_credentials_in_the_base_url_are_never_printed(bucket: BucketServer, tmp_path: Path, capsys) -> None:
    bucket.files.pop("/dataset/scin_cases.csv")
    port = bucket.url.rsplit(":", 1)[1]
    code = main(["--out", str(tmp_path), "--base-url", f"http://ops:s3cret@127.0.0.1:{port}/dataset",
                 "--no-progress", "--retries", "0"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == FailureKind.NOT_FOUND.exit_status
    assert "s3cret" not in err and "ops:" not in err
    assert f"at http://127.0.0.1:{port}/dataset/scin_cases.csv" in err


def test_no_network_says_so(tmp_path: Path, capsys) -> None:
    with BucketServer({}) as closed:
        url = closed.url  # the port is free again once the server is gone
    code = main(["--out", str(tmp_path), "--base-url", f"{url}/dataset", "--retries", "0"])
    assert code == FailureKind.NO_NETWORK.exit_status
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "download_scin: cannot connect to 127.0.0.1 (ConnectError): "
        f"check the network connection or proxy, then re-run {SEE}"
    )


def test_a_dns_failure_says_so(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -3] Temporary failure in name resolution", request=request)

    with httpx.Client(transport=httpx.MockTransport(refuse)) as client, pytest.raises(FetchError) as raised:
        fetch(client, "https://storage.googleapis.com/x/scin_cases.csv", tmp_path / "a.csv", retries=0)
    assert str(raised.value).startswith("cannot resolve storage.googleapis.com (DNS failure)")


def test_a_full_disk_says_free_space_and_keeps_the_partial_file(tmp_path: Path, monkeypatch) -> None:
    real_open = Path.open

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data: bytes) -> int:
            room = 10 - self.handle.tell()
            self.handle.write(data[:room])
            if len(data) > room:
                raise OSError(errno.ENOSPC, "No space left on device")
            return len(data)

    def fake_open(self: Path, mode: str = "r", *args, **kwargs):
        handle = real_open(self, mode, *args, **kwargs)
        return FullDisk(handle) if self.name.endswith(".part") else handle

    monkeypatch.setattr(Path, "open", fake_open)
    with httpx.Client(
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=b"x" * 100))
    ) as client:
        with pytest.raises(FetchError) as raised:
            fetch(client, "http://bucket/images/a.png", tmp_path / "a.png", retries=0)
    assert str(raised.value).startswith("disk full while writing") and "re-run" in str(raised.value)
    assert (tmp_path / "a.png.part").stat().st_size == 10


def test_the_shell_script_runs_the_downloader(bucket: BucketServer, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            "bash",
            str(REPO / "scripts" / "download_scin.sh"),
            "--skip-images",
            "--out",
            str(tmp_path),
            "--base-url",
            f"{bucket.url}/dataset",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["cases"] == 9 and (tmp_path / "metadata.json").exists()


def script(*args: str, repo: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(repo / "scripts" / "download_scin.sh"), "--no-progress", *args],
        capture_output=True, text=True, timeout=120, check=False, env=os.environ | env,
    )  # fmt: skip


def test_the_script_without_a_python_environment_says_to_run_setup(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "download_scin.sh", tmp_path / "scripts")  # a checkout without .venv
    done = script(repo=tmp_path)
    assert done.returncode == FailureKind.MISSING_CLI.exit_status == 14
    assert done.stderr.splitlines() == [MESSAGES["no_python"].render().line(SCRIPT)]
    assert done.stderr == (
        f"download_scin: no Python environment at .venv/bin/python: run bash scripts/setup.sh first {SEE}\n"
    )


def test_the_script_in_a_venv_without_httpx_names_the_package(bucket: BucketServer, tmp_path: Path) -> None:
    shadow = tmp_path / "shadow" / "httpx"
    shadow.mkdir(parents=True)  # found before site-packages: as if pip never installed httpx
    (shadow / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'httpx'\", name='httpx')\n"
    )
    done = script("--out", str(tmp_path / "out"), "--base-url", f"{bucket.url}/dataset",
                  PYTHONPATH=str(tmp_path / "shadow"))  # fmt: skip
    assert done.returncode == FailureKind.MISSING_CLIENT.exit_status
    assert done.stderr.splitlines() == [
        "download_scin: the Python package httpx is not installed in .venv: run bash scripts/setup.sh, "
        f"then bash scripts/download_scin.sh again {SEE}"
    ]
    assert bucket.requests == []


def test_the_script_after_a_dropped_connection_resumes_on_the_next_run(
    bucket: BucketServer, tmp_path: Path
) -> None:
    bucket.cut["/dataset/scin_labels.csv"] = 20
    args = ("--skip-images", "--retries", "0", "--out", str(tmp_path), "--base-url", f"{bucket.url}/dataset")
    done = script(*args)
    assert done.returncode == FailureKind.INTERRUPTED.exit_status
    assert done.stderr.splitlines()[-1].startswith(
        "download_scin: download of scin_labels.csv interrupted after 20 bytes"
    )
    assert not (tmp_path / "csv" / "scin_labels.csv").exists()  # only scin_labels.csv.part
    assert not (tmp_path / "metadata.json").exists()
    done = script(*args)
    assert done.returncode == 0, done.stderr
    assert ("/dataset/scin_labels.csv", "bytes=20-") in bucket.requests
    assert (tmp_path / "csv" / "scin_labels.csv").read_bytes() == bucket.files["/dataset/scin_labels.csv"]
