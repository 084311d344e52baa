"""Calibrate the red-flags-by-meaning threshold on benign speech, and write it for review.

    python -m tools.calibrate_semantic [--write] --json

Benign speech: every turn and intake answer of the conversations that must not escalate, in
the core scenarios and the development split (never the blind split). The threshold is set
just above the closest any of them comes to an escalating rule's example; the development
split's red-flag turns show what the detector then catches on its own. ``--write`` stores the
result in ``agent/semantic_flags.yaml``, which the detector reads at start-up.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

import yaml

from agent.policy import default_policy
from agent.semantic_flags import CALIBRATION_FILE, SemanticRedFlags, calibrate
from configs.settings import hub_offline_environment, load_settings
from rag.text_encoder import TextEncoder
from tools.evaluate import load_conversations

SPLITS = ("core", "dev")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.calibrate_semantic", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--write", action="store_true", help=f"write {CALIBRATION_FILE.name}")
    parser.add_argument("--margin", type=float, default=0.02)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    hub_offline_environment()
    settings = load_settings()
    encoder = TextEncoder(settings.path(settings.embedding.text_model_dir), settings.embedding.device)
    detector = SemanticRedFlags(lambda texts: encoder.encode(texts), default_policy(), threshold=1.0)
    scenarios = [s for split in SPLITS for s in load_conversations(split)]
    benign = [t for s in scenarios if not s.escalate for t in (*s.turns, *s.profile.values())]
    red_flags = [t for s in scenarios if s.escalate for t in s.turns]
    report = {
        **calibrate(detector, benign, red_flags, margin=args.margin),
        "calibrated_on": list(SPLITS),
        "date": datetime.now(UTC).date().isoformat(),
    }
    if args.write:
        header = (
            "# Written by `python -m tools.calibrate_semantic --write`; read by agent/semantic_flags.py.\n"
        )
        CALIBRATION_FILE.write_text(header + yaml.safe_dump(report, sort_keys=False))
    print(json.dumps(report) if args.json else yaml.safe_dump(report, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
