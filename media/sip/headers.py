"""Structured SIP header values: name-addr (From/To/Contact), Via, parameters, fresh tags."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field

MAGIC_COOKIE = "z9hG4bK"


def parse_params(text: str) -> dict[str, str]:
    """``;a=1;b;c="x"`` -> {"a": "1", "b": "", "c": "x"} (names lower-cased)."""
    params: dict[str, str] = {}
    for part in text.split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            params[name.strip().lower()] = value.strip().strip('"')
    return params


def format_params(params: dict[str, str]) -> str:
    return "".join(f";{name}={value}" if value != "" else f";{name}" for name, value in params.items())


@dataclass
class NameAddr:
    """``"Display" <sip:user@host>;tag=x`` (display name and URI are personal data: never log them)."""

    uri: str
    display: str = ""
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> NameAddr:
        value = value.strip()
        if "<" in value:
            display, _, rest = value.partition("<")
            uri, closed, params = rest.partition(">")
            display = display.strip()
            quoted = display.startswith('"') and display.endswith('"') and len(display) >= 2
            bad_display = '"' in display and not quoted
            if not closed or not uri.strip() or bad_display or (params.strip() and params.strip()[0] != ";"):
                raise ValueError("bad name-addr")
            return cls(uri.strip(), display.strip('"'), parse_params(params))
        uri, _, params = value.partition(";")  # addr-spec: parameters belong to the header
        if not uri.strip() or " " in uri.strip():
            raise ValueError("bad addr-spec")
        return cls(uri.strip(), "", parse_params(params))

    @property
    def tag(self) -> str | None:
        return self.params.get("tag") or None

    def __str__(self) -> str:
        display = f'"{self.display}" ' if self.display else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"


_VIA = re.compile(
    r"^SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+(\[[0-9A-Fa-f:.]+\]|[^\s:;]+)(?:\s*:\s*(\d{1,5}))?\s*(;.*)?$"
)


@dataclass
class Via:
    transport: str
    host: str
    port: int | None = None
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, value: str) -> Via:
        match = _VIA.match(value.strip())
        if not match:
            raise ValueError("bad Via")
        transport, host, port, params = match.groups()
        number = int(port) if port else None
        if number is not None and not 0 < number < 65536:
            raise ValueError("bad Via port")
        return cls(transport.upper(), host, number, parse_params(params or ""))

    @property
    def branch(self) -> str | None:
        return self.params.get("branch") or None

    @property
    def sent_by(self) -> str:
        return f"{self.host}:{self.port or 5060}"

    def __str__(self) -> str:
        port = f":{self.port}" if self.port else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"


def uri_scheme(uri: str) -> str:
    return uri.partition(":")[0].lower()


def new_tag() -> str:
    return secrets.token_hex(6)


def new_branch() -> str:
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_call_id(host: str) -> str:
    return f"{secrets.token_hex(10)}@{host}"
