"""The one logging set-up of every entry point redacts everything that reaches stderr.

Our lines, pipecat's (loguru), Python warnings and uncaught exceptions, in both formats.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import warnings

import pytest
from loguru import logger as loguru_logger

from agent.redacted_logs import setup_redacted_logging
from tests.configs.test_logs import SAID, assert_clean, restore_logging  # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("restore_logging")


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_every_kind_of_line_reaching_stderr_is_redacted(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    setup_redacted_logging("INFO", log_format)
    logging.getLogger("web.app").info("caller said %s", SAID)
    loguru_logger.warning(f"Not speaking: {SAID}")
    warnings.warn(f"cannot parse {SAID}", UserWarning, stacklevel=1)
    try:
        raise ValueError(SAID)
    except ValueError:
        sys.excepthook(*sys.exc_info())  # what Python does with an exception nobody caught
    worker = threading.Thread(target=lambda: int(SAID), name="worker")
    worker.start()
    worker.join()
    err = capsys.readouterr().err
    for seen in ("caller said", "Not speaking", "UserWarning: cannot parse", "uncaught exception"):
        assert seen in err
    assert err.count("Traceback (most recent call last)") == 2
    assert_clean(err)
    if log_format == "json":
        assert len([json.loads(line) for line in err.strip().splitlines()]) == 5


def test_lines_below_the_level_are_not_written(capsys: pytest.CaptureFixture[str]) -> None:
    setup_redacted_logging("WARNING", "text")
    logging.getLogger("web.app").info("server ready")
    logging.getLogger().setLevel(logging.INFO)  # what tools.evaluate does to capture its sessions
    logging.getLogger("web.app").info("session started")
    logging.getLogger("web.app").warning("slow turn")
    err = capsys.readouterr().err
    assert "server ready" not in err and "session started" not in err and "slow turn" in err
