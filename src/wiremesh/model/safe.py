"""Render-time guards: every value that goes into a line of a file wiremesh writes passes one of these.

Validation at the edge (:mod:`wiremesh.codec.fields`, :mod:`wiremesh.model.endpoint`,
:mod:`wiremesh.model.names`) is the first line of defence; these guards are the second, so that no
renderer can produce a line that was not built from validated parts, even from an inventory built in
code or a validation rule that has a gap. Issue 10 found such a gap: Python's ``ipaddress`` accepts
anything after ``%`` (an IPv6 zone id), including a newline, and the next line of a wg-quick file is
run by wg-quick as root (``PreUp = ...``).

What can break out of a value differs per format, so each guard is strict for all of them at once:

- wg-quick(8) reads ``Key = Value`` lines, cuts everything after ``#``
  (wg-quick.bash: ``stripped="${line%%\\#*}"``) and trims spaces;
- /etc/hosts (hosts(5)) splits fields on blanks, ``#`` starts a comment;
- sysctl.d(5) reads ``key = value`` lines, ``#`` and ``;`` start comments;
- YAML (k3s' config.yaml) ends a line at any of YAML 1.1's line breaks (``\\n``, ``\\r``, U+0085,
  U+2028, U+2029) and reads ``#`` after a blank as a comment.

A guard that fires means a value got past validation: it raises :class:`UnsafeValue` rather than write.
"""

from __future__ import annotations

import re
from ipaddress import (
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    IPv6Address,
    IPv6Interface,
    IPv6Network,
)

from wiremesh.errors import ValidationError, quote

IPValue = IPv4Address | IPv6Address | IPv4Network | IPv6Network | IPv4Interface | IPv6Interface

# Printable ASCII (space to '~'), not starting or ending with a space (parsers trim those).
_VALUE = re.compile(r"[!-~](?:[ -~]*[!-~])?")
# Printable ASCII without blanks: one field of /etc/hosts, a sysctl key, a YAML key.
_WORD = re.compile(r"[!-~]+")


class UnsafeValue(ValidationError):
    """A value that would break out of its line, key or comment in a file wiremesh writes."""

    def __init__(self, what: str, value: object, why: str) -> None:
        super().__init__(
            f"refusing to write {what} {quote(value)}: {why}",
            "wiremesh validates every value before it renders a file; this one got through, "
            "please report how (the value, and the command that took it)",
        )


def config_value(value: object, what: str) -> str:
    """``str(value)`` for the value part of a ``Key = Value`` line (wg-quick, sysctl.d).

    Printable ASCII only, no ``#`` (a comment to wg-quick), no ``;`` at the start (a comment to
    sysctl), no leading or trailing blank (both formats trim them, so the value would change).
    """
    text = str(value)
    if not _VALUE.fullmatch(text) or "#" in text or text.startswith(";"):
        raise UnsafeValue(what, text, _why(text))
    return text


def word(value: object, what: str) -> str:
    """``str(value)`` as one blank-free field (a host name in /etc/hosts, a key): printable ASCII,
    no blanks, no ``#``."""
    text = str(value)
    if not _WORD.fullmatch(text) or "#" in text:
        raise UnsafeValue(what, text, _why(text))
    return text


def comment_text(text: str, what: str) -> str:
    """``text`` for the body of a comment line: anything printable, nothing that ends the line.

    ``str.isprintable`` is false for every line break Python, bash or YAML know (``\\n``, ``\\r``,
    ``\\v``, ``\\f``, ``\\x1c``-``\\x1e``, U+0085, U+2028, U+2029) and for every other control
    character.
    """
    if not text.isprintable():
        raise UnsafeValue(what, text, "it holds a line break or another control character")
    return text


def ip_text(value: IPValue, what: str) -> str:
    """An address, network or interface address as text, refusing an IPv6 zone id (``%eth0``):
    ``ipaddress`` keeps whatever followed the ``%``, and no file wiremesh writes can use one."""
    if isinstance(value, IPv6Address):
        scope = value.scope_id
    elif isinstance(value, IPv6Network):
        scope = value.network_address.scope_id
    elif isinstance(value, IPv6Interface):
        scope = value.ip.scope_id
    else:
        scope = None
    if scope is not None:
        raise UnsafeValue(what, str(value), "an IPv6 zone id ('%...') has no place here")
    return word(value, what)


def _why(text: str) -> str:
    if not text:
        return "it is empty"
    if not text.isprintable():
        return "it holds a line break or another control character"
    if "#" in text:
        return "'#' starts a comment"
    if text != text.strip():
        return "it starts or ends with a blank"
    if not text.isascii():
        return "it holds characters outside printable ASCII"
    return "it holds a blank or a character that is not allowed here"
