"""Parsers and serialisers for single inventory values, shared by the TOML codec and the CLI options.

Each parser takes the raw value and ``what`` (how the error should name it, e.g. ``node 'web-1': endpoint``)
and returns a validated value or raises :class:`ValidationError`.

One rule for every key: types are strict. A value of the wrong type is an error whose hint shows the
value as it should be written (``port = "51820"`` -> ``write port = 51820``); nothing is converted
silently. The CLI converts its option strings (``--port 51820``) before they get here.
"""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from wiremesh.errors import ValidationError, quote, wrong_type
from wiremesh.model.addressing import IPNetwork, refuse_zone
from wiremesh.model.endpoint import Endpoint, SshTarget, digits, parse_port
from wiremesh.model.keys import PublicKey
from wiremesh.model.names import check_label, interface_name, node_name


def toml_literal(value: object) -> str:
    """``value`` as it is written in TOML (for hints): ``51820``, ``"web-1"``, ``["a", "b"]``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        fix = toml_literal(str(value)) if isinstance(value, int | float) else None
        raise wrong_type(what, value, "a string", fix)
    return value


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        fix = value if isinstance(value, str) and digits(value.strip()) else None
        raise wrong_type(what, value, "a whole number", fix.strip() if fix else None)
    return value


def _network(value: object, what: str, example: str, version: int | None) -> IPNetwork:
    text = refuse_zone(_text(value, what).strip(), what)
    kind = {4: "an IPv4 network", 6: "an IPv6 network", None: "a subnet"}[version]
    try:
        return _checked(ip_network(text, strict=True), text, what, kind, example, version)
    except ValueError:
        pass
    try:
        loose = ip_network(text, strict=False)
    except ValueError:
        raise ValidationError(
            f"{what} {quote(text)} is not {kind}", f"write it in CIDR form, e.g. {example}"
        ) from None
    _checked(loose, text, what, kind, example, version)
    raise ValidationError(f"{what} {quote(text)} has host bits set", f"did you mean {loose}?")


def _checked(
    net: IPNetwork, text: str, what: str, kind: str, example: str, version: int | None
) -> IPNetwork:
    if version is not None and (net.version != version or "/" not in text):
        raise ValidationError(
            f"{what} {quote(text)} is not {kind} in CIDR form", f"write it like {example}"
        )
    return net


def parse_cidr4(value: object, what: str) -> IPv4Network:
    """An IPv4 network in CIDR form, with no host bits set."""
    net = _network(value, what, "10.0.0.0/24", 4)
    assert isinstance(net, IPv4Network)
    return net


def parse_cidr6(value: object, what: str) -> IPv6Network:
    """An IPv6 network in CIDR form, with no host bits set (a ULA network is the usual choice)."""
    net = _network(value, what, "fd00:77::/64", 6)
    assert isinstance(net, IPv6Network)
    return net


def parse_subnet(value: object, what: str) -> IPNetwork:
    """An IPv4 or IPv6 subnet (CIDR, no host bits; a bare address means /32 or /128)."""
    return _network(value, what, "172.16.5.0/24", None)


def parse_subnets(value: object, what: str) -> tuple[IPNetwork, ...]:
    """A list of subnets (a single string is refused: ``allowed_ips = ["172.16.5.0/24"]``)."""
    if not isinstance(value, list):
        fix = toml_literal([value]) if isinstance(value, str) else '["172.16.5.0/24"]'
        raise wrong_type(what, value, "a list of subnets", fix)
    return tuple(parse_subnet(item, what) for item in value)


def parse_ipv4(value: object, what: str) -> IPv4Address:
    """An IPv4 address."""
    text = _text(value, what)
    try:
        return IPv4Address(text.strip())
    except ValueError:
        raise ValidationError(
            f"{what} {quote(text)} is not an IPv4 address", "e.g. 10.0.0.7 (no prefix length)"
        ) from None


def parse_ipv6(value: object, what: str) -> IPv6Address:
    """An IPv6 address (without a zone id)."""
    text = refuse_zone(_text(value, what), what)
    try:
        return IPv6Address(text.strip())
    except ValueError:
        raise ValidationError(
            f"{what} {quote(text)} is not an IPv6 address", "e.g. fd00:77::7 (no prefix length)"
        ) from None


def parse_port_value(value: object, what: str) -> int:
    """A port number."""
    return parse_port(value, what)


def parse_mtu(value: object, what: str) -> int | str:
    """An MTU (range checked with the rest of the mesh), or "auto"."""
    if value == "auto":
        return "auto"
    if isinstance(value, str) and digits(value.strip()):
        raise wrong_type(what, value, 'a number or "auto"', value.strip())
    if isinstance(value, str):
        raise ValidationError(
            f'{what} {quote(value)} is not a number or "auto"', 'e.g. 1420 or "auto"'
        )
    return _int(value, what)


def parse_seconds(value: object, what: str) -> int:
    """A whole number of seconds."""
    return _int(value, what)


def parse_endpoint(value: object, what: str) -> Endpoint:
    """``host[:port]``."""
    return Endpoint.parse(value, what)


def parse_ssh(value: object, what: str) -> SshTarget:
    """``[user@]host[:port]``."""
    return SshTarget.parse(value, what)


def parse_public_key(value: object, what: str) -> PublicKey:
    """A base64 public key."""
    return PublicKey.parse(value, what)


def parse_label(value: object, what: str) -> str:
    """A lowercase name (site, mesh name)."""
    return check_label(value, what)


def parse_node_name(value: object, what: str) -> str:
    """A node name."""
    return node_name(value, what)


def parse_interface(value: object, what: str) -> str:
    """A WireGuard interface name."""
    return interface_name(value, what)


def parse_k3s_role(value: object, what: str) -> str:
    """``server`` or ``agent``."""
    if not isinstance(value, str):
        raise wrong_type(what, value, 'a string ("server" or "agent")', '"server"')
    if value not in ("server", "agent"):
        raise ValidationError(f"{what} {quote(value)} is not a k3s role", 'use "server" or "agent"')
    return value


def parse_text(value: object, what: str) -> str:
    """Any non-empty string."""
    text = _text(value, what)
    if not text.strip():
        raise ValidationError(f"{what} must not be empty", "give a value, or remove the key")
    if "\x00" in text:
        raise ValidationError(f"{what} {quote(text)} holds a NUL character", "remove it")
    return text


def parse_bool(value: object, what: str) -> bool:
    """``true`` or ``false`` (TOML booleans, not strings)."""
    if not isinstance(value, bool):
        raise ValidationError(f"{what} must be true or false, not {value!r}")
    return value


def parse_metrics_interval(value: object, what: str) -> int:
    """Seconds between two textfile writes (5-3600)."""
    from wiremesh.model.inventory import METRICS_INTERVAL_RANGE

    seconds = _int(value, what)
    low, high = METRICS_INTERVAL_RANGE
    if not low <= seconds <= high:
        raise ValidationError(
            f"{what} {seconds} is out of range", f"give seconds from {low} to {high}"
        )
    return seconds


def parse_host_directory(value: object, what: str) -> str:
    """An absolute directory path on the hosts, of plain characters (it goes into shell scripts and
    systemd units): letters, digits and ``._+-/``, no ``..`` and no empty component."""
    import re

    text = _text(value, what)
    parts = text.rstrip("/").split("/")
    if (
        not re.fullmatch(r"/[A-Za-z0-9._+/-]*", text)
        or len(text) > 200
        or text.rstrip("/") == ""
        or any(p in ("", ".", "..") for p in parts[1:])
    ):
        raise ValidationError(
            f"{what} {text!r} is not a plain absolute directory",
            "use an absolute path of letters, digits and ._+-/ (for example "
            '"/var/lib/prometheus/node-exporter")',
        )
    return text.rstrip("/")


def dump_value(value: object) -> object:
    """A model value as a TOML value."""
    if isinstance(value, tuple | list):
        return [dump_value(v) for v in value]
    if isinstance(value, bool | int):
        return value
    return str(value)
