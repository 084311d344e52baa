"""Run the phone bridge alone, without the web server: ``python -m web.phone``.

Settings come from configs/ and the ``SIP__*`` variables. The bridge gets the whole product from
the composition root (``web/product.py``): a call here has retrieval, a room and the clinician
queue's records, exactly like a call to the server's own bridge.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from agent.redacted_logs import setup_redacted_logging
from configs.settings import ConfigError, hub_offline_environment, load_settings
from web.product import build_product


async def serve() -> None:
    settings = load_settings()
    setup_redacted_logging(settings.log_level, settings.log_format)
    product = build_product(settings, phone=True)
    await product.start()
    assert product.phone is not None
    print(f"SIP bridge ready on {settings.sip.host}:{product.phone.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for name in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(name, stop.set)
    try:
        await stop.wait()
    finally:
        await product.stop()


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
