"""The sysctl.d(5) file wiremesh keeps on hosts that forward (``/etc/sysctl.d/60-wiremesh.conf``):
render and parse (pure).

The host script (:func:`wiremesh.remote.scripts.enable_forwarding`) writes :data:`HEADER`, keeps the
lines of the file that are not ours, and appends :func:`render_lines`. Every line is built from a
guarded key and value (:mod:`wiremesh.model.safe`), so a rendered line is always exactly one setting.

sysctl.d(5): one ``key = value`` per line; empty lines and lines starting with ``#`` or ``;`` are
ignored; a key may be written with ``.`` or ``/``.
"""

from __future__ import annotations

import re

from wiremesh.errors import ValidationError, quote
from wiremesh.model.safe import UnsafeValue, comment_text, config_value

HEADER = "# wiremesh: managed file (forwarding for relays and routed subnets)"
FORWARD4 = "net.ipv4.ip_forward"
FORWARD6 = "net.ipv6.conf.all.forwarding"

Setting = tuple[str, str]

# A sysctl key: dot-separated names of /proc/sys entries (interface names may hold '-', '_', '+').
_KEY = re.compile(r"[a-z0-9_+-]+(?:[./][a-z0-9_+-]+)*", re.IGNORECASE)


def forwarding(ipv4: bool, ipv6: bool) -> tuple[Setting, ...]:
    """The settings that turn on IPv4 and/or IPv6 forwarding."""
    return tuple((key, "1") for key, on in ((FORWARD4, ipv4), (FORWARD6, ipv6)) if on)


def render_lines(settings: tuple[Setting, ...]) -> tuple[str, ...]:
    """One ``key = value`` line per setting, each key and value guarded."""
    lines = []
    for key, value in settings:
        if not _KEY.fullmatch(key):
            raise UnsafeValue("the sysctl key", key, "it is not a sysctl key")
        lines.append(f"{key} = {config_value(value, key)}")
    return tuple(lines)


def render(settings: tuple[Setting, ...]) -> str:
    """The whole file as wiremesh alone would write it: the header, then the settings."""
    return "\n".join((comment_text(HEADER, "the header"), *render_lines(settings))) + "\n"


def parse(text: str, source: str = "<sysctl.d file>") -> tuple[Setting, ...]:
    """The settings of a sysctl.d file, in order (``key``, ``value``), as sysctl reads them."""
    out: list[Setting] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        if not sep or not _KEY.fullmatch(key.strip()):
            raise ValidationError(f"{source}:{number}: not a sysctl setting: {quote(raw)}")
        out.append((key.strip(), value.strip()))
    return tuple(out)
