"""``python -m pipeline.replay WAV... --out DIR``: the reviewers' replay command, kept stable.

The replay tool lives in ``tools/replay.py`` (tooling sits above every layer); this name stays
so that recorded-patient replays written against it keep working.
"""

from __future__ import annotations

import sys

from tools.replay import main

if __name__ == "__main__":
    sys.exit(main())
