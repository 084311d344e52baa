"""Run the SIP bridge alone: ``python -m media.sip`` (settings from configs/ and SIP__* variables)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from configs.logs import setup_logging
from configs.settings import ConfigError, hub_offline_environment, load_settings
from media.host import SessionHost
from media.sip.server import SipServer
from pipeline.session import warm_up


async def serve() -> None:
    settings = load_settings()
    setup_logging(settings.log_level, settings.log_format)
    warm_up(settings)
    server = SipServer(settings, SessionHost(settings))
    await server.start()
    print(f"SIP bridge ready on {settings.sip.host}:{server.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(name, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop()


def main() -> int:
    hub_offline_environment()
    try:
        asyncio.run(serve())
    except ConfigError as error:
        print(f"configuration error: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:
        print(f"cannot start the SIP bridge: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
