"""The Debian programs some tests start for real (redis-server, turnserver, promtool, haproxy ...).

``scripts/test.sh`` installs every one of them. On a workstation without one, the tests that need
it are skipped with the package to install; in CI (``CI=true``) a missing one fails the run, so a
test can never pass there by not running.
"""

from __future__ import annotations

import os
import shutil

import pytest


def debian_tool(binary: str, package: str) -> str:
    """The path of ``binary`` (from Debian's ``package``); skipped locally, failed in CI, when absent."""
    path = shutil.which(binary)
    if path is None:
        reason = f"Debian's {package} is not installed (scripts/test.sh installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path
