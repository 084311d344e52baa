"""The product's server (``python -m web``) reachable over WebRTC on 127.0.0.1, for benchmarks.

    python -m tools.loopback_server            # the product, as python -m web runs it
    python -m tools.loopback_server --baseline # the same server, sessions assembled stock

Settings come from the environment exactly as for ``python -m web``. Two things differ, both
done here, in this process only, so that nothing in ``web/`` or ``media/`` changes for them:

- aioice is told to offer 127.0.0.1 alone (``tools.webrtc_patient_client.loopback_ice``): it
  skips loopback otherwise, and a patient on the same machine could not connect.
- ``--baseline``: a documented hook for the capacity benchmark's baseline. The session host's
  ``session_processors`` (``media.host.SessionHost``) is replaced, in this process, by one that
  assembles each session from stock pipecat services with their defaults
  (``tools.baseline.baseline_session``: its own Silero VAD, Whisper and Smart Turn models per
  session, as pipecat does by default), with the same brain and voice. Everything else (the
  transport, admission, rooms, the queue) is the product's, so the two runs differ only in the
  session's assembly.

Running the server as its own process lets a benchmark measure its CPU and memory alone.
"""

from __future__ import annotations

import argparse
import sys

from pipecat.processors.frame_processor import FrameProcessor

from agent.backends import create_backend
from media.host import SessionHost
from pipeline.session import SessionContext
from tools.baseline import baseline_session
from tools.webrtc_patient_client import loopback_ice
from web.__main__ import main as web_main


def baseline_processors(host: SessionHost, context: SessionContext) -> list[FrameProcessor]:
    """A stock-pipecat session (each one loads its own models), with a brain built for it."""
    return baseline_session(host.settings, create_backend(host.settings), context)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.loopback_server", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--baseline", action="store_true", help="assemble sessions from stock pipecat")
    args = parser.parse_args(argv)
    if args.baseline:
        SessionHost.session_processors = baseline_processors  # the hook (see the docstring)
    with loopback_ice():
        return web_main()


if __name__ == "__main__":
    sys.exit(main())
