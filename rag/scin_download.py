"""Download SCIN from its public bucket: the CSVs, ``metadata.json``, and the images.

The work behind ``bash scripts/download_scin.sh`` (``rag.download`` is its command line).
Files land in ``DIR`` (default ``data/raw/scin``): ``csv/scin_cases.csv``, ``csv/scin_labels.csv``,
``metadata.json`` (see ``rag/scin.py``) and ``images/<id>.png``. Every file is written as
``<name>.part`` and renamed once complete and verified (CSV header; PNG signature, end chunk
and size), so an interrupted run resumes where it stopped and a re-run only fetches what is
missing. Images the bucket does not have (404) are listed in ``missing_images.txt``.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from tqdm import tqdm

from rag.cases import load_cases
from rag.columns import REQUIRED_CASE_COLUMNS, REQUIRED_LABEL_COLUMNS
from rag.download_messages import DEFAULT_BASE_URL
from rag.fetch import FetchError, fetch, image_problem
from rag.scin import CASES_CSV, LABELS_CSV, METADATA, convert

MISSING_LIST = "missing_images.txt"


@dataclass
class DownloadReport:
    out: str = ""
    cases: int = 0
    labelled: int = 0
    images_listed: int = 0
    images: dict[str, int] = field(default_factory=dict)  # downloaded / resumed / present / missing
    missing: list[str] = field(default_factory=list)


def csv_verifier(required: tuple[str, ...]) -> Callable[[Path], str | None]:
    """A check that a downloaded file starts with a SCIN CSV header."""

    def problem(path: Path) -> str | None:
        with path.open("rb") as handle:
            head = handle.read(1 << 16).decode("utf-8-sig", errors="replace").lstrip()
        if head.startswith("<"):
            return "an HTML page, not a CSV: a proxy or captive portal answered"
        header = next(csv.reader(head.splitlines()[:1]), [])
        missing = [name for name in required if name not in [column.strip() for column in header]]
        return f"no {', '.join(missing)} column in the header" if missing else None

    return problem


def _fetch_csvs(client: httpx.Client, base: str, csv_dir: Path, retries: int, backoff_s: float) -> None:
    for name, required in ((CASES_CSV, REQUIRED_CASE_COLUMNS), (LABELS_CSV, REQUIRED_LABEL_COLUMNS)):
        print(f"[scin] {name}", file=sys.stderr)
        try:
            fetch(
                client,
                f"{base}/{name}",
                csv_dir / name,
                verify=csv_verifier(required),
                retries=retries,
                backoff_s=backoff_s,
                custom_base=base != DEFAULT_BASE_URL,
            )
        except FetchError as exc:
            exc.fatal = True  # no CSV, no dataset
            raise


def _fetch_images(
    client: httpx.Client,
    base: str,
    out_dir: Path,
    report: DownloadReport,
    *,
    workers: int,
    retries: int,
    backoff_s: float,
    progress: bool,
) -> None:
    cases = load_cases(out_dir / METADATA)
    jobs = {image.path: image.source or image.path for case in cases for image in case.images}
    report.images_listed = len(jobs)
    counts: Counter[str] = Counter()
    with (
        ThreadPoolExecutor(max_workers=max(1, workers)) as pool,
        tqdm(total=len(jobs), desc="images", unit="img", disable=not progress) as bar,
    ):
        futures = {
            pool.submit(
                fetch,
                client,
                f"{base}/images/{Path(source).name}",
                out_dir / path,
                verify=image_problem,
                retries=retries,
                backoff_s=backoff_s,
                custom_base=base != DEFAULT_BASE_URL,
            ): path
            for path, source in jobs.items()
        }
        for future in as_completed(futures):
            try:
                counts[future.result().status] += 1
            except FetchError as exc:
                if exc.fatal:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
                counts["missing"] += 1
                report.missing.append(futures[future])
            bar.update(1)
    report.images = dict(counts)
    missing_list = out_dir / MISSING_LIST
    if report.missing:
        missing_list.write_text("\n".join(sorted(report.missing)) + "\n")
    else:
        missing_list.unlink(missing_ok=True)


def download(
    out_dir: Path,
    *,
    base_url: str = DEFAULT_BASE_URL,
    skip_images: bool = False,
    limit: int | None = None,
    workers: int = 8,
    retries: int = 3,
    backoff_s: float = 0.5,
    timeout_s: float = 60.0,
    progress: bool = True,
) -> DownloadReport:
    """Fetch the CSVs, convert them, fetch the images; resumable and safe to re-run."""
    base = base_url.rstrip("/")
    report = DownloadReport(out=str(out_dir))
    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 15.0))
    limits = httpx.Limits(max_connections=max(1, workers), max_keepalive_connections=max(1, workers))
    with httpx.Client(timeout=timeout, limits=limits, follow_redirects=True) as client:
        _fetch_csvs(client, base, out_dir / "csv", retries, backoff_s)
        converted = convert(out_dir / "csv", out_dir, limit=limit)
        report.cases, report.labelled = converted.cases, converted.labelled
        report.images_listed = len({image.path for case in load_cases(out_dir) for image in case.images})
        print(f"[scin] {METADATA}: {converted.cases} cases, {converted.labelled} labelled", file=sys.stderr)
        if not skip_images:
            _fetch_images(
                client,
                base,
                out_dir,
                report,
                workers=workers,
                retries=retries,
                backoff_s=backoff_s,
                progress=progress,
            )
    return report
