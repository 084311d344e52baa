"""Fetch the models that do not ship on PyPI into ``models/`` with huggingface_hub.

- ``medgemma``: ``google/medgemma-4b-it`` -> models/medgemma-4b-it (gated: HF_TOKEN + licence)
- ``siglip``: ``google/siglip-so400m-patch14-384`` -> models/siglip-so400m-patch14-384
- ``whisper``: ``Systran/faster-whisper-small`` -> models/whisper-small (VOICE__WHISPER_MODEL_SIZE=small)
- ``piper``: extra voices from ``rhasspy/piper-voices`` -> models/piper/<voice>.onnx(.json)

Idempotent: a finished model gets ``.download-complete.json`` (its files and sizes) and is skipped
next time without touching the network; huggingface_hub resumes a dropped connection within the
run, and a rerun fetches only the files that are not there yet. Every failure is one line on
stderr that names the cause and the fix, and exits with its ``FailureKind``'s status
(``agent/download_failure.py``; the runbook's "Download failures" table lists them all).
``HF_TOKEN`` and ``HF_ENDPOINT`` are huggingface_hub's own variables.
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

from agent.download_failure import DownloadFailed, Failure, FailureKind, Message, report

MARKER = ".download-complete.json"
GB = 1024**3
DEFAULT_VOICES = ("en_US-lessac-medium", "en_US-amy-medium", "en_GB-alba-medium")
TOKENS_PAGE = "https://huggingface.co/settings/tokens"
SCRIPT = "download_models"
RERUN = "bash scripts/download_models.sh"
K = FailureKind

# Every line the script can print on failure; docs/runbook.md's table shows each (a test checks it).
MESSAGES = {
    "no_python": Message(
        K.MISSING_CLI, "no Python environment at .venv/bin/python", "run bash scripts/setup.sh first"
    ),
    "no_client": Message(
        K.MISSING_CLIENT,
        "the Python package {package} is not installed in .venv",
        f"run bash scripts/setup.sh, then {RERUN} again",
    ),
    "no_network": Message(
        K.NO_NETWORK, "cannot reach {endpoint}", "check the network (or HTTPS_PROXY / HF_ENDPOINT) and rerun"
    ),
    "proxy": Message(
        K.NO_NETWORK,
        "the proxy refused the connection to {endpoint}",
        "check HTTPS_PROXY / HTTP_PROXY and rerun",
    ),
    "no_token": Message(
        K.MISSING_CREDENTIALS,
        "{repo} is gated (or private) and no HF_TOKEN is set",
        "accept the licence at {endpoint}/{repo}, create a read token at "
        f"{TOKENS_PAGE} and export HF_TOKEN",
    ),
    "token_rejected": Message(
        K.UNAUTHORIZED,
        "401 from the hub for {repo}",
        f"HF_TOKEN was rejected: create a new read token at {TOKENS_PAGE} and export HF_TOKEN",
    ),
    "no_access": Message(
        K.FORBIDDEN,
        "403 from the hub for {repo}",
        "HF_TOKEN's account has no access: accept the licence at {endpoint}/{repo} with that account "
        "and wait for the approval",
    ),
    "repo_not_found": Message(
        K.NOT_FOUND, "404 from the hub for {repo}", "check the repository name and HF_ENDPOINT"
    ),
    "file_not_found": Message(
        K.NOT_FOUND,
        "404 from the hub for a file of {repo}",
        "check the name (Piper voices are named like en_US-lessac-medium)",
    ),
    "bad_voice": Message(
        K.NOT_FOUND, "{voice} is not a Piper voice name", "Piper voices are named like en_US-lessac-medium"
    ),
    "interrupted": Message(
        K.INTERRUPTED,
        "the download of {repo} stopped before it was complete ({detail})",
        f"rerun {RERUN}: finished files are kept, the others are fetched again",
    ),
    "stopped": Message(K.STOPPED, "stopped during {what}", f"rerun {RERUN}: finished files are kept"),
    "disk_full": Message(
        K.DISK_FULL,
        "not enough disk space for {repo} ({detail})",
        "free some space (df -h {where}) and rerun",
    ),
    "server_error": Message(
        K.SERVER_ERROR, "{status} from the hub for {repo}", "the hub is having trouble: rerun later"
    ),
    "other_status": Message(
        K.UNEXPECTED, "{status} from the hub for {repo}", "check HF_TOKEN and HF_ENDPOINT, then rerun"
    ),
    "offline": Message(
        K.OFFLINE_MODE,
        "offline mode is on (HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE)",
        f"run HF_HUB_OFFLINE=0 {RERUN}",
    ),
    "cannot_write": Message(
        K.LOCAL_ERROR, "cannot write {where} ({detail})", "check the directory's permissions"
    ),
    "settings": Message(K.LOCAL_ERROR, "the settings were refused ({detail})", "fix that variable and rerun"),
    "unexpected": Message(
        K.UNEXPECTED,
        "{error} while downloading {repo}",
        f"rerun {RERUN}; if it fails again, see docs/models.md",
    ),
}


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


class IncompleteDownload(Exception):
    """Files are missing after the download; the message says which."""


def say(message: str) -> None:
    print(f"[download] {message}", flush=True)


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def ensure_reachable() -> None:
    if not reachable(endpoint()):
        raise DownloadFailed(MESSAGES["no_network"].render(endpoint=endpoint()))


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


def hub_token() -> str | None:
    from huggingface_hub import get_token

    return get_token()


# --- what went wrong, in one line ------------------------------------------------------------


def explain(exc: BaseException, repo: str, target: Path) -> Failure:
    """The failure record for a failed download of ``repo`` into ``target`` (never the token)."""
    if isinstance(exc, DownloadFailed):
        return exc.failure
    chain = _chain(exc)
    missing = next((e for e in chain if isinstance(e, ModuleNotFoundError)), None)
    if missing is not None:
        return MESSAGES["no_client"].render(package=missing.name or _first_line(missing))
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
    )

    hub = endpoint()
    if any(isinstance(e, OfflineModeIsEnabled) or "HF_HUB_OFFLINE" in str(e) for e in chain):
        return MESSAGES["offline"].render()
    if isinstance(exc, IncompleteDownload) or "consistency check failed" in str(exc).lower():
        return MESSAGES["interrupted"].render(repo=repo, detail=_first_line(exc))
    disk = next(
        (e for e in chain if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)), None
    )
    if disk is not None:
        return MESSAGES["disk_full"].render(repo=repo, detail="disk full while writing", where=target.parent)
    http = next((e for e in chain if isinstance(e, HfHubHTTPError) and e.response is not None), None)
    status = http.response.status_code if http is not None and http.response is not None else None
    if any(isinstance(e, GatedRepoError) for e in chain) or status in (401, 403):
        if not hub_token():
            return MESSAGES["no_token"].render(repo=repo, endpoint=hub)
        return MESSAGES["token_rejected" if status == 401 else "no_access"].render(repo=repo, endpoint=hub)
    if isinstance(exc, EntryNotFoundError) and not isinstance(exc, LocalEntryNotFoundError):
        return MESSAGES["file_not_found"].render(repo=repo)
    if isinstance(exc, RepositoryNotFoundError) or status == 404:
        return MESSAGES["repo_not_found"].render(repo=repo)
    if status is not None:
        return MESSAGES["server_error" if status >= 500 else "other_status"].render(status=status, repo=repo)
    connect, transport, proxy = _http_errors()
    if any(isinstance(e, proxy) for e in chain):
        return MESSAGES["proxy"].render(endpoint=hub)
    if any(isinstance(e, (*connect, ConnectionRefusedError, socket.gaierror)) for e in chain) or (
        isinstance(exc, LocalEntryNotFoundError) and not any(isinstance(e, transport) for e in chain)
    ):
        return MESSAGES["no_network"].render(endpoint=hub)
    dropped = next((e for e in chain if isinstance(e, (*transport, ConnectionError, TimeoutError))), None)
    if dropped is not None:
        return MESSAGES["interrupted"].render(
            repo=repo, detail=f"{type(dropped).__name__}: the connection dropped"
        )
    if any(isinstance(e, PermissionError) for e in chain):
        return MESSAGES["cannot_write"].render(where=target, detail="permission denied")
    return MESSAGES["unexpected"].render(
        error=f"{type(exc).__name__} ({_scrub(_first_line(exc))})", repo=repo
    )


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _http_errors() -> tuple[tuple[type[BaseException], ...], ...]:
    """Connect, transport and proxy errors of the HTTP clients huggingface_hub may use (httpx2 or httpx)."""
    connect: list[type[BaseException]] = []
    transport: list[type[BaseException]] = []
    proxy: list[type[BaseException]] = []
    for name in ("httpx2", "httpx"):
        try:
            module = __import__(name)
        except ImportError:
            continue
        connect.extend((module.ConnectError, module.ConnectTimeout))
        transport.append(module.TransportError)
        proxy.append(module.ProxyError)
    return tuple(connect), tuple(transport), tuple(proxy)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _scrub(text: str) -> str:
    """``text`` without the token, should an error ever quote it."""
    try:
        token = hub_token()
    except ImportError:
        return text
    return text.replace(token, "<HF_TOKEN>") if token else text


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
    """Raise IncompleteDownload unless the model's essential files (and every weight shard) are there."""
    for choices in item.required:
        if not any((target / name).is_file() and (target / name).stat().st_size > 0 for name in choices):
            raise IncompleteDownload(f"missing {' or '.join(choices)}")
    for index in target.glob("*.safetensors.index.json"):
        shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        missing = sorted(shard for shard in shards if not (target / shard).is_file())
        if missing:
            raise IncompleteDownload(f"missing {', '.join(missing)}")


def check_space(where: Path, size_gb: float, repo: str, have: Path | None = None) -> None:
    """Fail early when the disk cannot hold what is left to download (``have``: a partial download)."""
    where.mkdir(parents=True, exist_ok=True)
    done = (
        sum(p.stat().st_size for p in have.rglob("*") if p.is_file()) / GB if have and have.is_dir() else 0.0
    )
    free_gb = shutil.disk_usage(where).free / GB
    if free_gb < max(size_gb - done, 0.0) * 1.1:
        detail = f"needs about {size_gb:.1f} GB free in {where}, {free_gb:.1f} GB left"
        raise DownloadFailed(MESSAGES["disk_full"].render(repo=repo, detail=detail, where=where))


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
    check_space(models, item.size_gb, item.repo, have=target)
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
        raise DownloadFailed(MESSAGES["bad_voice"].render(voice=voice)) from None
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
    check_space(models, PIPER_VOICE_GB * len(wanted), PIPER_REPO)
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
    keys = [key.strip() for key in args.only.split(",") if key.strip()]
    unknown = [key for key in keys if key not in ITEMS and key != "piper"]
    if unknown:
        print(f"{SCRIPT}: unknown model {', '.join(unknown)}: choose from {choices}", file=sys.stderr)
        return 2
    try:
        models = args.models_dir or _settings_models_dir()
    except DownloadFailed as exc:
        return report(SCRIPT, exc.failure)
    first: Failure | None = None
    for key in keys:
        item = ITEMS.get(key)
        repo = item.repo if item else PIPER_REPO
        target = models / (item.target if item else "piper")
        try:
            if item:
                fetch_repo(item, models)
            else:
                fetch_voices([v.strip() for v in args.voices.split(",") if v.strip()], models)
        except KeyboardInterrupt:
            return report(SCRIPT, MESSAGES["stopped"].render(what=repo))
        except Exception as exc:  # noqa: BLE001 - every failure becomes its one line
            failure = explain(exc, repo, target)
            report(SCRIPT, failure)
            first = first or failure
            if failure.kind in (FailureKind.NO_NETWORK, FailureKind.MISSING_CLIENT, FailureKind.OFFLINE_MODE):
                break  # nothing else would download either
    return first.kind.exit_status if first else 0


def _settings_models_dir() -> Path:
    try:
        from configs.settings import ConfigError, load_settings
    except ModuleNotFoundError as exc:
        raise DownloadFailed(MESSAGES["no_client"].render(package=exc.name)) from None
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise DownloadFailed(MESSAGES["settings"].render(detail=str(exc).splitlines()[0])) from None
    return settings.path(settings.models_dir)


if __name__ == "__main__":
    raise SystemExit(main())
