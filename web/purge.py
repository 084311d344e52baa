"""The retention purge: delete the stored escalation records that ended long enough ago.

    python -m web.purge [--dry-run] [--json]

An escalation record (``ESCALATIONS_DIR``, one file each) holds a camera frame and a transcript;
once ended, it is kept ``ESCALATIONS__RETENTION_DAYS`` (30 by default), counted from when it
ended, then this command deletes it. Records not ended are never deleted, nor files that are not
readable records (counted, for a person to look at). It prints counts only, never content;
``--dry-run`` deletes nothing and says what it would delete. Run it daily (cron, a systemd timer).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from typing import TextIO

from agent.escalation import EscalationStore, PurgeReport
from configs.settings import ConfigError, Settings, load_settings


def purge(settings: Settings, *, dry_run: bool = False, now: datetime | None = None) -> PurgeReport:
    """Delete (or with ``dry_run`` count) the ended records past the retention."""
    cutoff = (now or datetime.now(UTC)) - timedelta(days=settings.escalations.retention_days)
    return EscalationStore(settings.path(settings.escalations_dir)).purge(cutoff, dry_run=dry_run)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m web.purge", description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
    parser.add_argument("--json", action="store_true", help="print the counts as one JSON object")
    return parser


def main(
    argv: list[str] | None = None, *, settings: Settings | None = None, stdout: TextIO | None = None
) -> int:
    """Run the purge; 0 done, 1 the folder could not be read or written, 2 a configuration error."""
    args = _parser().parse_args(argv)
    stdout = stdout or sys.stdout
    try:
        settings = settings or load_settings()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        report = purge(settings, dry_run=args.dry_run)
    except OSError as exc:
        print(f"error: the escalations folder could not be purged ({type(exc).__name__})", file=sys.stderr)
        return 1
    days = settings.escalations.retention_days
    if args.json:
        print(json.dumps({**report.to_dict(), "retention_days": days}), file=stdout)
    else:
        verb = "would delete" if args.dry_run else "deleted"
        print(
            f"{verb} {report.deleted} ended escalation records older than {days} days; kept {report.kept} "
            f"ended more recently, {report.active} not ended, {report.unreadable} unreadable",
            file=stdout,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
