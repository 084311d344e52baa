"""``python -m agent.evaluate --json``: the evaluation's command, kept stable.

The evaluation lives in ``tools/evaluate.py`` (it drives the whole product, so it sits above
every layer); this name stays so that the reviewers' command keeps working.
"""

from __future__ import annotations

import sys

from tools.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
