"""The command line of the SCIN download: ``bash scripts/download_scin.sh`` runs ``python -m rag.download``.

    bash scripts/download_scin.sh [--skip-images] [--limit N] [--out DIR] [--base-url URL]

The download itself is ``rag.scin_download``; this module turns each way it can fail into one line
on stderr that names the cause and the fix, and exits with that failure's own status
(``agent.download_failure.FailureKind``, listed in docs/runbook.md's "Download failures"). It
imports the standard library only until the arguments are parsed, so a ``.venv`` without httpx
still gets its one line instead of a traceback.
"""

from __future__ import annotations

import argparse
import errno
import json
import sys
from dataclasses import asdict
from pathlib import Path

from agent.download_failure import DownloadFailed, Failure, report
from rag.download_messages import DEFAULT_BASE_URL, MESSAGES, SCRIPT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rag.download", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="target directory (default: settings scin_dir)")
    parser.add_argument(
        "--base-url", default=DEFAULT_BASE_URL, help=f"the dataset's URL (default {DEFAULT_BASE_URL})"
    )
    parser.add_argument("--skip-images", action="store_true", help="only the CSVs and metadata.json")
    parser.add_argument("--limit", type=int, default=None, help="only the first N cases (and their images)")
    parser.add_argument("--workers", type=int, default=8, help="parallel image downloads")
    parser.add_argument("--retries", type=int, default=3, help="retries per file before giving up")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except DownloadFailed as exc:
        return report(SCRIPT, exc.failure)
    except KeyboardInterrupt:
        return report(SCRIPT, MESSAGES["stopped"].render())


def _run(args: argparse.Namespace) -> int:
    try:
        from configs.settings import ConfigError, hub_offline_environment, load_settings
        from rag.cases import MetadataError
        from rag.scin import ScinFormatError
        from rag.scin_download import MISSING_LIST, download
    except ModuleNotFoundError as exc:
        raise DownloadFailed(MESSAGES["no_client"].render(package=exc.name)) from None
    hub_offline_environment()
    try:
        settings = load_settings()
        out_dir = args.out or settings.path(settings.scin_dir)
        result = download(
            out_dir,
            base_url=args.base_url,
            skip_images=args.skip_images,
            limit=args.limit,
            workers=args.workers,
            retries=args.retries,
            timeout_s=args.timeout,
            progress=not args.no_progress,
        )
    except ConfigError as exc:
        raise DownloadFailed(MESSAGES["settings"].render(detail=str(exc).splitlines()[0])) from None
    except (ScinFormatError, MetadataError) as exc:
        raise DownloadFailed(MESSAGES["bad_csv"].render(detail=str(exc))) from None
    except OSError as exc:
        raise DownloadFailed(_os_failure(exc)) from None
    if result.missing:
        print(
            f"[scin] {len(result.missing)} images are not on the server: listed in {out_dir / MISSING_LIST}",
            file=sys.stderr,
        )
    print(json.dumps(asdict(result) | {"missing": result.missing[:20]}))
    return 0


def _os_failure(exc: OSError) -> Failure:
    path = Path(exc.filename or ".")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return MESSAGES["disk_full"].render(path=path, where=path.parent)
    return MESSAGES["cannot_write"].render(path=path, error=exc.strerror or type(exc).__name__)


if __name__ == "__main__":
    sys.exit(main())
