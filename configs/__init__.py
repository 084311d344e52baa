"""Configuration: one settings object built from ``configs/<env>.yaml``, ``.env`` and the environment."""

from configs.settings import ConfigError, Settings, load_settings

__all__ = ["ConfigError", "Settings", "load_settings"]
