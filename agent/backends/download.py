"""Fetch the models that do not ship on PyPI into ``models/`` with huggingface_hub.

- ``medgemma``: ``google/medgemma-4b-it`` -> models/medgemma-4b-it (gated: HF_TOKEN + licence)
- ``siglip``: ``google/siglip-so400m-patch14-384`` -> models/siglip-so400m-patch14-384
- ``whisper``: ``Systran/faster-whisper-small`` -> models/whisper-small (VOICE__WHISPER_MODEL_SIZE=small)
- ``piper``: extra voices from ``rhasspy/piper-voices`` -> models/piper/<voice>.onnx(.json)

Idempotent: a finished model gets ``.download-complete.json`` (its files and sizes) and is skipped
next time without touching the network; an interrupted download resumes. Every failure is one
line that says the fix (no network, gated model without token or licence, disk full, partial
download). ``HF_TOKEN`` and ``HF_ENDPOINT`` are huggingface_hub's own variables.
Usage: python -m agent.backends.download [--only medgemma,siglip,whisper,piper] [--voices V1,V2]
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import shutil
import socket
import sys
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

MARKER = ".download-complete.json"
GB = 1024**3
DEFAULT_VOICES = ("en_US-lessac-medium", "en_US-amy-medium", "en_GB-alba-medium")
TOKENS_PAGE = "https://huggingface.co/settings/tokens"
SCRIPT = "bash scripts/download_models.sh"


@dataclass(frozen=True)
class Item:
    key: str
    repo: str
    target: str  # under models/
    size_gb: float  # roughly, for the free-space check
    patterns: tuple[str, ...]
    required: tuple[tuple[str, ...], ...]  # each inner tuple: at least one of these files


ITEMS = {
    "medgemma": Item(
        key="medgemma",
        repo="google/medgemma-4b-it",
        target="medgemma-4b-it",
        size_gb=8.7,
        patterns=("*.json", "*.safetensors", "tokenizer.model", "*.jinja"),
        required=(
            ("config.json",),
            ("tokenizer.json", "tokenizer.model"),
            ("preprocessor_config.json", "processor_config.json"),
        ),
    ),
    "siglip": Item(
        key="siglip",
        repo="google/siglip-so400m-patch14-384",
        target="siglip-so400m-patch14-384",
        size_gb=3.6,
        patterns=("*.json", "*.safetensors", "*.model", "*.txt"),
        required=(("config.json",), ("model.safetensors", "model.safetensors.index.json")),
    ),
    "whisper": Item(
        key="whisper",
        repo="Systran/faster-whisper-small",
        target="whisper-small",
        size_gb=0.5,
        patterns=("config.json", "model.bin", "tokenizer.json", "vocabulary.*", "preprocessor_config.json"),
        required=(("config.json",), ("model.bin",), ("tokenizer.json",)),
    ),
}
PIPER_REPO = "rhasspy/piper-voices"
PIPER_VOICE_GB = 0.07


class DownloadError(RuntimeError):
    """A download failed; the message is one line that says the fix."""


class NetworkDown(DownloadError):
    """The hub cannot be reached at all: nothing else will download either."""


class IncompleteDownload(DownloadError):
    """Files are missing after the download; the message says which."""


def say(message: str) -> None:
    print(f"[download] {message}", flush=True)


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def ensure_reachable() -> None:
    if not reachable(endpoint()):
        where = endpoint()
        raise NetworkDown(f"cannot reach {where}: check the network (or HTTPS_PROXY / HF_ENDPOINT) and rerun")


def reachable(url: str, timeout_s: float = 5.0) -> bool:
    """Whether the hub's host accepts a connection (always True behind a proxy: the proxy decides)."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.getproxies() or not parts.hostname:
        return True
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def has_token() -> bool:
    from huggingface_hub import get_token

    return bool(get_token())


# --- what went wrong, in one line ------------------------------------------------------------


def explain(exc: BaseException, repo: str, target: Path) -> str:
    """The one-line fix for a failed download of ``repo`` into ``target``."""
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    page = f"{endpoint()}/{repo}"
    chain = _chain(exc)
    transport, proxy = _http_errors()
    if any(isinstance(e, OfflineModeIsEnabled) or "HF_HUB_OFFLINE" in str(e) for e in chain):
        return "offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE): run HF_HUB_OFFLINE=0 " + SCRIPT
    if isinstance(exc, IncompleteDownload) or "consistency check failed" in str(exc).lower():
        return f"{target} is incomplete ({_first_line(exc)}): rerun scripts/download_models.sh to resume"
    if isinstance(exc, DownloadError):
        return str(exc)
    if any(isinstance(e, OSError) and e.errno == errno.ENOSPC for e in chain):
        return (
            f"disk full while writing {target}: free some space (df -h {target.parent}) and rerun to resume"
        )
    status = (
        exc.response.status_code if isinstance(exc, HfHubHTTPError) and exc.response is not None else None
    )
    if isinstance(exc, GatedRepoError) or (isinstance(exc, RepositoryNotFoundError) and status in (401, 403)):
        if status == 401 and has_token() and "Invalid credentials" in str(exc):
            return (
                f"HF_TOKEN was rejected (401): create a new read token at {TOKENS_PAGE} and export HF_TOKEN"
            )
        if not has_token():
            token = f"<a read token from {TOKENS_PAGE}>"
            return f"{repo} is gated: accept the licence at {page}, then export HF_TOKEN={token} and rerun"
        return f"HF_TOKEN has no access to {repo} ({status}): accept the licence at {page} with that account"
    if isinstance(exc, EntryNotFoundError):
        return (
            f"a file is not in {repo} (404): check the name (Piper voices are named like en_US-lessac-medium)"
        )
    if isinstance(exc, RepositoryNotFoundError) or status == 404:
        return f"{repo} was not found at {endpoint()} (404): check the repository name and HF_ENDPOINT"
    if status is not None and status >= 500:
        return (
            f"{endpoint()} answered {status}: the hub is having trouble; rerun later (the download resumes)"
        )
    if status is not None:
        return f"{endpoint()} answered {status} for {repo}: check HF_TOKEN and HF_ENDPOINT, then rerun"
    if any(isinstance(e, proxy) for e in chain):
        return f"the proxy refused the connection to {endpoint()}: check HTTPS_PROXY / HTTP_PROXY"
    if any(isinstance(e, (*transport, ConnectionError, TimeoutError)) for e in chain) or isinstance(
        exc, LocalEntryNotFoundError
    ):
        return f"cannot reach {endpoint()}: check the network (or HTTPS_PROXY / HF_ENDPOINT) and rerun"
    return f"{type(exc).__name__}: {_first_line(exc)} (rerun to resume; see docs/models.md)"


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _http_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """Transport and proxy errors of the HTTP clients huggingface_hub may use (httpx2 or httpx)."""
    transport: list[type[BaseException]] = []
    proxy: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        transport.append(module.TransportError)
        proxy.append(module.ProxyError)
    return tuple(transport), tuple(proxy)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- idempotence: the completion marker --------------------------------------------------------


def is_complete(target: Path) -> bool:
    """True when a previous run finished ``target`` and every file it recorded is still there, same size."""
    marker = target / MARKER
    if not marker.is_file():
        return False
    try:
        files = json.loads(marker.read_text())["files"]
    except (ValueError, KeyError):
        return False
    return all(_size(target / name) == size for name, size in files.items())


def _size(path: Path) -> int | None:
    return path.stat().st_size if path.is_file() else None


def remove_damaged(target: Path) -> list[str]:
    """Delete recorded files whose size changed since they were downloaded (so they are fetched again)."""
    marker = target / MARKER
    try:
        files = json.loads(marker.read_text())["files"]
    except (OSError, ValueError, KeyError):
        return []
    damaged = [name for name, size in files.items() if _size(target / name) not in (None, size)]
    for name in damaged:
        (target / name).unlink()
    marker.unlink()
    return damaged


def mark_complete(target: Path, repo: str) -> None:
    files = {
        str(path.relative_to(target)): path.stat().st_size
        for path in sorted(target.rglob("*"))
        if path.is_file() and path.name != MARKER and ".cache" not in path.relative_to(target).parts
    }
    (target / MARKER).write_text(json.dumps({"repo": repo, "files": files}, indent=1))


def check_files(item: Item, target: Path) -> None:
    """Raise DownloadError unless the model's essential files (and every weight shard) are there."""
    for choices in item.required:
        if not any((target / name).is_file() and (target / name).stat().st_size > 0 for name in choices):
            raise IncompleteDownload(f"missing {' or '.join(choices)}")
    for index in target.glob("*.safetensors.index.json"):
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        missing = sorted(shard for shard in shards if not (target / shard).is_file())
        if missing:
            raise IncompleteDownload(f"missing {', '.join(missing)}")


def check_space(where: Path, size_gb: float, have: Path | None = None) -> None:
    """Fail early when the disk cannot hold what is left to download (``have``: a partial download)."""
    where.mkdir(parents=True, exist_ok=True)
    done = (
        sum(p.stat().st_size for p in have.rglob("*") if p.is_file()) / GB if have and have.is_dir() else 0.0
    )
    free_gb = shutil.disk_usage(where).free / GB
    if free_gb < max(size_gb - done, 0.0) * 1.1:
        raise DownloadError(
            f"needs about {size_gb:.1f} GB free in {where}, {free_gb:.1f} GB left: free some space"
        )


# --- the downloads -------------------------------------------------------------------------


def fetch_repo(item: Item, models: Path) -> None:
    from huggingface_hub import snapshot_download

    target = models / item.target
    if is_complete(target):
        say(f"{item.target}: already present")
        return
    ensure_reachable()
    damaged = remove_damaged(target)
    if damaged:
        say(f"{item.target}: {', '.join(damaged)} changed since the download: fetching again")
    check_space(models, item.size_gb, have=target)
    say(f"{item.target}: downloading {item.repo} (about {item.size_gb:.1f} GB) into {target}")
    snapshot_download(item.repo, local_dir=target, allow_patterns=list(item.patterns), endpoint=endpoint())
    check_files(item, target)
    mark_complete(target, item.repo)
    say(f"{item.target}: done")


def voice_path(voice: str) -> str:
    """``en_US-lessac-medium`` -> its path in rhasspy/piper-voices (without the extension)."""
    try:
        language, name, quality = voice.split("-", 2)
    except ValueError:
        raise DownloadError(f"{voice!r} is not a Piper voice name like en_US-lessac-medium") from None
    return f"{language.split('_')[0]}/{language}/{name}/{quality}/{voice}"


def fetch_voices(voices: list[str], models: Path) -> None:
    from huggingface_hub import hf_hub_download

    target = models / "piper"
    wanted = [
        v for v in voices if not all((target / f"{v}{ext}").is_file() for ext in (".onnx", ".onnx.json"))
    ]
    for voice in sorted(set(voices) - set(wanted)):
        say(f"piper/{voice}: already present")
    if not wanted:
        return
    ensure_reachable()
    check_space(models, PIPER_VOICE_GB * len(wanted))
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models, prefix=".piper-") as staging:
        for voice in wanted:
            say(f"piper/{voice}: downloading from {PIPER_REPO}")
            for ext in (".onnx.json", ".onnx"):  # the small file first: a bad name fails fast
                got = hf_hub_download(
                    PIPER_REPO, voice_path(voice) + ext, local_dir=staging, endpoint=endpoint()
                )
                shutil.move(got, target / f"{voice}{ext}.partial")
            for ext in (".onnx.json", ".onnx"):
                (target / f"{voice}{ext}.partial").replace(target / f"{voice}{ext}")
            say(f"piper/{voice}: done")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    choices = ",".join([*ITEMS, "piper"])
    parser.add_argument("--only", default=choices, help=f"comma-separated, of {choices}")
    parser.add_argument("--voices", default=",".join(DEFAULT_VOICES), help="Piper voices, comma-separated")
    parser.add_argument("--models-dir", type=Path, default=None, help="default: the settings' models_dir")
    args = parser.parse_args(argv)
    if args.models_dir is None:
        from configs.settings import load_settings

        settings = load_settings()
        models = settings.path(settings.models_dir)
    else:
        models = args.models_dir
    keys = [key.strip() for key in args.only.split(",") if key.strip()]
    unknown = [key for key in keys if key not in ITEMS and key != "piper"]
    if unknown:
        print(f"[download] unknown model {', '.join(unknown)}: choose from {choices}", file=sys.stderr)
        return 2
    failed = 0
    for key in keys:
        item = ITEMS.get(key)
        label, repo = (item.target, item.repo) if item else ("piper", PIPER_REPO)
        target = models / (item.target if item else "piper")
        try:
            if item:
                fetch_repo(item, models)
            else:
                fetch_voices([v.strip() for v in args.voices.split(",") if v.strip()], models)
        except KeyboardInterrupt:
            print(
                f"[download] {label}: interrupted: rerun scripts/download_models.sh to resume",
                file=sys.stderr,
            )
            return 130
        except NetworkDown as exc:
            print(f"[download] {exc}", file=sys.stderr)
            return 1
        except Exception as exc:  # noqa: BLE001 - every failure becomes its one-line fix
            failed += 1
            print(f"[download] {label}: FAILED: {explain(exc, repo, target)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
