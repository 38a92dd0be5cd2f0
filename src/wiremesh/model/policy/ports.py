"""Ports of policy rules and probes of policy tests, as validated values.

A rule covers *port specs*: ``"tcp/5432"``, ``"udp/8472"``, ``"tcp/2379-2380"`` (a range, both ends
included), ``"icmp"`` (ping: ICMP and ICMPv6 echo requests) or ``"any"`` (every protocol and port). A
test asks about one *probe*, a single connection attempt: ``"tcp/5432"``, ``"udp/8472"`` or ``"icmp"``.

"icmp" means ping on purpose: ICMP errors that belong to a connection (destination unreachable, packet
too big for path MTU discovery) are conntrack's "related" traffic, which the policy always lets back
(see :mod:`wiremesh.model.policy.compile`); other ICMP types that start nothing are not worth a rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from wiremesh.errors import ValidationError

PORT_MIN = 1
PORT_MAX = 65535

_SPEC = re.compile(r"^(tcp|udp)/(\d{1,5})(?:-(\d{1,5}))?$")
_HINT_SPEC = 'write "tcp/5432", "udp/8472", a range "tcp/2379-2380", "icmp" (ping) or "any"'
_HINT_PROBE = 'write one port like "tcp/5432" or "udp/8472", or "icmp" (ping)'


class Proto(StrEnum):
    """The protocols a policy knows."""

    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"  # echo requests (ping), IPv4 and IPv6
    ANY = "any"  # port specs only: every protocol


@dataclass(frozen=True, order=True)
class Probe:
    """One connection attempt a test asks about: TCP or UDP to one port, or a ping."""

    proto: Proto
    port: int = 0  # 0 for icmp

    def __post_init__(self) -> None:
        if self.proto is Proto.ANY:
            raise ValueError("a probe is tcp, udp or icmp")
        if (self.proto is Proto.ICMP) != (self.port == 0):
            raise ValueError(f"bad probe port {self.port} for {self.proto}")

    def __str__(self) -> str:
        return str(self.proto) if self.proto is Proto.ICMP else f"{self.proto}/{self.port}"

    @staticmethod
    def parse(value: object, what: str) -> Probe:
        """``"tcp/5432"``, ``"udp/8472"`` or ``"icmp"``; ranges and ``"any"`` are refused."""
        spec = PortSpec.parse(value, what, _HINT_PROBE)
        if spec.proto is Proto.ANY or spec.low != spec.high:
            raise ValidationError(f"{what} {value!r} is not a single probe", _HINT_PROBE)
        return Probe(spec.proto, spec.low)


@dataclass(frozen=True, order=True)
class PortSpec:
    """What a rule covers: a protocol and, for TCP and UDP, a port range (``low``..``high``)."""

    proto: Proto
    low: int = 0  # 0 for icmp and any
    high: int = 0

    def __post_init__(self) -> None:
        if self.proto in (Proto.TCP, Proto.UDP):
            if not PORT_MIN <= self.low <= self.high <= PORT_MAX:
                raise ValueError(f"bad port range {self.low}-{self.high}")
        elif self.low or self.high:
            raise ValueError(f"{self.proto} has no ports")

    def __str__(self) -> str:
        if self.proto in (Proto.ICMP, Proto.ANY):
            return str(self.proto)
        if self.low == self.high:
            return f"{self.proto}/{self.low}"
        return f"{self.proto}/{self.low}-{self.high}"

    def matches(self, probe: Probe) -> bool:
        """Whether this spec covers ``probe``."""
        if self.proto is Proto.ANY:
            return True
        if self.proto is not probe.proto:
            return False
        return self.proto is Proto.ICMP or self.low <= probe.port <= self.high

    @staticmethod
    def parse(value: object, what: str, hint: str = _HINT_SPEC) -> PortSpec:
        """Parse ``"tcp/5432"``, ``"udp/8472"``, ``"tcp/2379-2380"``, ``"icmp"`` or ``"any"``."""
        if not isinstance(value, str):
            raise ValidationError(
                f'{what} must be a string such as "tcp/5432", not {type(value).__name__} {value!r}',
                hint,
            )
        text = value.strip().lower()
        if text in (Proto.ICMP, Proto.ANY):
            return PortSpec(Proto(text))
        found = _SPEC.match(text)
        if not found:
            raise ValidationError(f"{what} {value!r} is not a port", hint)
        low = int(found[2])
        high = int(found[3]) if found[3] else low
        for port in (low, high):
            if not PORT_MIN <= port <= PORT_MAX:
                raise ValidationError(
                    f"{what} {value!r}: port {port} is out of range",
                    f"ports go from {PORT_MIN} to {PORT_MAX}",
                )
        if low > high:
            raise ValidationError(
                f"{what} {value!r}: the range is backwards",
                f'write the lower port first: "{found[1]}/{high}-{low}"',
            )
        return PortSpec(Proto(found[1]), low, high)


def parse_port_specs(value: object, what: str) -> tuple[PortSpec, ...]:
    """One port spec or a non-empty list of them."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValidationError(
            f'{what} must be a port or a list of ports, e.g. ["tcp/5432", "tcp/6432"]', _HINT_SPEC
        )
    return tuple(PortSpec.parse(item, what) for item in items)
