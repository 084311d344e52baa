"""``python -m media.sip``: the runbook's command for the phone bridge alone, kept working.

The bridge is started from the composition root (``web/phone.py``), which sits in the top
runtime layer; this name stays so that existing service files keep working.
"""

from __future__ import annotations

import sys

from web.phone import main

if __name__ == "__main__":
    sys.exit(main())
