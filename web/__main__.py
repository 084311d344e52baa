"""Run the server: ``python -m web`` (settings from configs/<APP_ENV>.yaml and the environment)."""

from __future__ import annotations

import sys

import uvicorn

from agent.redacted_logs import setup_redacted_logging
from configs.settings import ConfigError, hub_offline_environment, load_settings


def main() -> int:
    hub_offline_environment()
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 2
    setup_redacted_logging(settings.log_level, settings.log_format)
    from web.app import create_app

    try:
        app = create_app(settings)
    except ConfigError as exc:
        print(f"refusing to start: {exc}", file=sys.stderr)
        return 2
    # proxy_headers off: the app reads X-Forwarded-For itself (FORWARDED_ALLOW_IPS, web/app.py).
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
