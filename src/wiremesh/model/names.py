"""Names: node names, site names, the mesh name, interface names.

Node and mesh names become DNS labels (``<node>.<mesh>`` in ``/etc/hosts``), so they follow the RFC 1123
label rule, restricted to lowercase: letters, digits and ``-``, not starting or ending with ``-``.
"""

from __future__ import annotations

import re
from typing import NewType

from wiremesh.errors import ValidationError, quote, wrong_type

NodeName = NewType("NodeName", str)

# Always fullmatch: with match, '$' would also accept a trailing newline ("web-1\n").
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
NAME_MAX = 32
# wg-quick(8): "INTERFACE ... must be ... [a-zA-Z0-9_=+.-]{1,15}" (the kernel's IFNAMSIZ is 16).
_INTERFACE = re.compile(r"[a-zA-Z0-9_=+.-]{1,15}")


def check_label(value: object, what: str) -> str:
    """Return ``value`` if it is a valid lowercase DNS-style label of 1-32 characters."""
    if not isinstance(value, str):
        number = isinstance(value, int | float) and not isinstance(value, bool)
        raise wrong_type(what, value, "a string", f'"{value}"' if number else '"web-1"')
    if not value or len(value) > NAME_MAX or not _LABEL.fullmatch(value):
        raise ValidationError(
            f"{what} {quote(value)} is not a valid name",
            "use 1-32 lowercase letters, digits and '-', not starting or ending with '-' "
            "(for example 'web-1')",
        )
    return value


def node_name(value: object, what: str = "node name") -> NodeName:
    """Validate a node name."""
    return NodeName(check_label(value, what))


def interface_name(value: object, what: str = "interface") -> str:
    """Validate a WireGuard interface name as wg-quick(8) does."""
    if not isinstance(value, str):
        raise wrong_type(what, value, "a string", '"wg0"')
    if not _INTERFACE.fullmatch(value):
        raise ValidationError(
            f"{what} {quote(value)} is not a valid interface name",
            "use 1-15 characters from a-z, A-Z, 0-9 and _=+.- (for example 'wg0')",
        )
    return value
