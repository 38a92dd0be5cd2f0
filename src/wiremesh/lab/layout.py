"""Names and addresses of lab hosts: pure functions, no I/O.

Every kernel object the lab creates carries the ``wm-`` prefix so that it is recognisable (``ip link``,
``ip netns list``) and so that the lab never touches anything it did not name. Underlay addresses come from
198.51.100.0/24 (TEST-NET-2, RFC 5737): documentation space that never routes on the Internet, so a lab
host cannot reach anything real by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from wiremesh.errors import ValidationError

PREFIX = "wm-"
"""Prefix of every netns, link and bridge the lab creates."""

MIN_HOSTS = 1
MAX_HOSTS = 60

UNDERLAY = IPv4Network("198.51.100.0/24")
"""The public underlay (RFC 5737 TEST-NET-2)."""

UNDERLAY_GATEWAY = IPv4Interface("198.51.100.1/24")
"""The root namespace's address on the public bridge. Hosts get no route through it."""

HOST_OFFSET = 10
"""Host i gets ``UNDERLAY[HOST_OFFSET + i]``: 198.51.100.11 for lab1."""

PUBLIC_BRIDGE = "wm-pub"
"""The public underlay bridge in the root namespace."""

IFNAMSIZ = 15
"""Longest link name the kernel accepts (IFNAMSIZ 16 including the NUL, include/uapi/linux/if.h)."""

OVERLAY_CIDR = IPv4Network("10.77.0.0/24")
"""The mesh CIDR of the inventory that ``lab up`` writes."""

SSH_PORT = 22
WG_PORT = 51820


def check_host_count(hosts: int) -> None:
    """Raise :class:`ValidationError` unless ``hosts`` is within 1..60."""
    if not MIN_HOSTS <= hosts <= MAX_HOSTS:
        raise ValidationError(
            f"--hosts must be between {MIN_HOSTS} and {MAX_HOSTS}, not {hosts}",
            hint=f"pick a number of hosts from {MIN_HOSTS} to {MAX_HOSTS}, e.g. --hosts 3",
        )


def host_name(index: int) -> str:
    """The name of host ``index`` (1-based): ``lab1``, ``lab2``..."""
    if index < MIN_HOSTS:
        raise ValueError(f"host index starts at 1, got {index}")
    return f"lab{index}"


def underlay_ip(index: int) -> IPv4Address:
    """The public underlay address of host ``index``: 198.51.100.(10 + index)."""
    if not MIN_HOSTS <= index <= MAX_HOSTS:
        raise ValueError(f"host index out of range: {index}")
    return UNDERLAY[HOST_OFFSET + index]


def overlay_ip(index: int) -> IPv4Address:
    """The mesh address the generated inventory gives host ``index``: 10.77.0.index."""
    return OVERLAY_CIDR[index]


def netns_name(host: str) -> str:
    """The network namespace of ``host`` (``wm-lab1``), as shown by ``ip netns list``."""
    return link_name(host)


def link_name(*parts: str) -> str:
    """A root-namespace link name ``wm-<parts joined by ->``, checked against IFNAMSIZ."""
    name = PREFIX + "-".join(parts)
    if len(name) > IFNAMSIZ:
        raise ValueError(f"link name {name!r} is longer than {IFNAMSIZ} characters")
    return name


def veth_name(host: str, ifname: str) -> str:
    """The root-side end of the veth whose other end is ``ifname`` inside ``host``."""
    return link_name(host, ifname)


@dataclass(frozen=True)
class HostAddress:
    """Where host ``index`` lives: its name and addresses (the pure part of a lab host)."""

    index: int
    name: str
    netns: str
    underlay: IPv4Interface
    overlay: IPv4Address

    @property
    def underlay_ip(self) -> IPv4Address:
        """The underlay address without its prefix length."""
        return self.underlay.ip


def host_addresses(hosts: int) -> list[HostAddress]:
    """Names and addresses of hosts ``lab1..lab<hosts>`` (validated count)."""
    check_host_count(hosts)
    result = []
    for i in range(1, hosts + 1):
        name = host_name(i)
        result.append(
            HostAddress(
                index=i,
                name=name,
                netns=netns_name(name),
                underlay=IPv4Interface(f"{underlay_ip(i)}/{UNDERLAY.prefixlen}"),
                overlay=overlay_ip(i),
            )
        )
    return result
