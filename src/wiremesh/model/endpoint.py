"""Endpoints (``host[:port]``) and SSH targets (``[user@]host[:port]``).

A host is an IPv4 address, a bracketed IPv6 address (``[2001:db8::1]:51820``, as wg(8) requires) or a DNS
name. A bare IPv6 address is refused: with a port it cannot be told apart from a longer address.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

from wiremesh.errors import ValidationError, quote, wrong_type
from wiremesh.model.addressing import refuse_zone

Host = IPv4Address | IPv6Address | str

# fullmatch, never match with '$': '$' also matches before a trailing newline.
_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_HINT_ENDPOINT = (
    "write HOST or HOST:PORT, e.g. 203.0.113.7:51820, [2001:db8::7]:51820 or vpn.example.com"
)


def digits(text: str) -> bool:
    """True for a non-empty string of ASCII digits (``str.isdigit`` is also true for '²', which
    ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def parse_port(value: object, what: str) -> int:
    """A UDP/TCP port number, 1-65535. Strict: a string of digits is refused with a hint."""
    if isinstance(value, bool) or not isinstance(value, int):
        fix = value.strip() if isinstance(value, str) and digits(value.strip()) else "51820"
        raise wrong_type(what, value, "a number from 1 to 65535", fix)
    if not 1 <= value <= 65535:
        raise ValidationError(
            f"{what} {quote(value)} is not a valid port", "use a number from 1 to 65535"
        )
    return value


def _parse_host(text: str, what: str) -> Host:
    refuse_zone(text, what)
    if text.startswith("[") and text.endswith("]"):
        try:
            return IPv6Address(text[1:-1])
        except ValueError:
            raise ValidationError(
                f"{what}: {quote(text)} is not a valid IPv6 address", _HINT_ENDPOINT
            ) from None
    try:
        addr = ip_address(text)
    except ValueError:
        pass
    else:
        if isinstance(addr, IPv6Address):
            raise ValidationError(
                f"{what}: IPv6 address {quote(text)} must be in brackets",
                f"write [{text}] or [{text}]:PORT",
            )
        return addr
    if re.fullmatch(r"[0-9.]+", text):
        raise ValidationError(f"{what}: {quote(text)} is not a valid IPv4 address", _HINT_ENDPOINT)
    name = text[:-1] if text.endswith(".") else text
    if not name or len(name) > 253 or not all(_DNS_LABEL.fullmatch(p) for p in name.split(".")):
        raise ValidationError(
            f"{what}: {quote(text)} is not a valid host name or address", _HINT_ENDPOINT
        )
    return name.lower()


def _split_host_port(text: str, what: str) -> tuple[str, str | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValidationError(f"{what}: {quote(text)} has '[' without ']'", _HINT_ENDPOINT)
        rest = text[end + 1 :]
        if rest == "":
            return text, None
        if not rest.startswith(":"):
            raise ValidationError(
                f"{what}: unexpected {quote(rest)} after ']' in {quote(text)}", _HINT_ENDPOINT
            )
        return text[: end + 1], rest[1:]
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, port
    return text, None


def format_host(host: Host) -> str:
    """A host as written in configs: IPv6 in brackets."""
    return f"[{host}]" if isinstance(host, IPv6Address) else str(host)


@dataclass(frozen=True)
class Endpoint:
    """Where a WireGuard peer is reached: a host and, if given, a UDP port."""

    host: Host
    port: int | None = None

    @staticmethod
    def parse(value: object, what: str = "endpoint") -> Endpoint:
        """Parse ``host[:port]``."""
        if not isinstance(value, str):
            raise wrong_type(what, value, "a string like HOST[:PORT]", '"203.0.113.7:51820"')
        if not value.strip():
            raise ValidationError(
                f"{what} must be a non-empty string like HOST[:PORT]", _HINT_ENDPOINT
            )
        text = value.strip()
        host_text, port_text = _split_host_port(text, what)
        port = None
        if port_text is not None:
            if not digits(port_text) or len(port_text) > 5:
                raise ValidationError(
                    f"{what}: port {quote(port_text)} in {quote(text)} is not a number",
                    _HINT_ENDPOINT,
                )
            port = parse_port(int(port_text), f"{what}: port")
        return Endpoint(_parse_host(host_text, what), port)

    def with_port(self, default: int) -> Endpoint:
        """This endpoint with ``default`` filled in when it has no port."""
        return self if self.port is not None else Endpoint(self.host, default)

    @property
    def is_ip(self) -> bool:
        """True for a literal address (no DNS lookup needed)."""
        return not isinstance(self.host, str)

    def __str__(self) -> str:
        host = format_host(self.host)
        return host if self.port is None else f"{host}:{self.port}"


@dataclass(frozen=True)
class SshTarget:
    """Where wiremesh logs in: ``[user@]host[:port]``; the host may be an alias from ssh_config."""

    host: Host
    user: str | None = None
    port: int | None = None

    @staticmethod
    def parse(value: object, what: str = "ssh") -> SshTarget:
        """Parse ``[user@]host[:port]``."""
        hint = "write [USER@]HOST[:PORT], e.g. root@203.0.113.7 or admin@web-1:2222"
        if not isinstance(value, str):
            raise wrong_type(what, value, "a string like [USER@]HOST[:PORT]", '"root@203.0.113.7"')
        if not value.strip():
            raise ValidationError(
                f"{what} must be a non-empty string like [USER@]HOST[:PORT]", hint
            )
        text = value.strip()
        user = None
        if "@" in text:
            user, text = text.rsplit("@", 1)
            if not _USER.fullmatch(user):
                raise ValidationError(f"{what}: {quote(user)} is not a valid user name", hint)
        endpoint = Endpoint.parse(text, what)
        return SshTarget(endpoint.host, user, endpoint.port)

    def __str__(self) -> str:
        out = format_host(self.host)
        if self.user:
            out = f"{self.user}@{out}"
        if self.port is not None:
            out = f"{out}:{self.port}"
        return out
