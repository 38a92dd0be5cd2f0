"""Names and addresses of lab hosts: pure functions, no I/O.

Every kernel object the lab creates carries the ``wm-`` prefix so that it is recognisable (``ip link``,
``ip netns list``) and so that the lab never touches anything it did not name. Underlay addresses come from
198.51.100.0/24 (TEST-NET-2, RFC 5737): documentation space that never routes on the Internet, so a lab
host cannot reach anything real by mistake.

Addressing plan (all RFC 5737 / RFC 3849 documentation space):

=========================  =================================================================
public bridge ``wm-pub``   198.51.100.0/24: root namespace .1, host i .(10+i), NAT router j .(200+j)
IPv6 (``--ipv6``)          2001:db8::/64 on the public bridge: root ::1, host i ``2001:db8::<10+i>``
                           (the decimal digits written as hex: lab1 is 2001:db8::11)
site k (1..4)              203.0.113.0/24 cut in /26: 203.0.113.(64(k-1))/26, its n-th host .(base+10+n)
NAT j (1..3)               192.0.2.64/26, .128/26, .192/26: router .(base+1), n-th host .(base+10+n)
ssh to NAT host i          TCP 198.51.100.(200+j):(2210+i), forwarded by its router to the host's :22
overlay (inventory)        10.77.0.i, and fd77::i (``cidr6``) with ``--ipv6``
=========================  =================================================================

192.0.2.0/26 is left out on purpose: test machines often have their own uplink there (this one has
192.0.2.2 via 192.0.2.1), and a lab address that looks like the machine's own would only confuse.
None of the private ranges is ever given to the root namespace: private bridges are pure L2.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Interface, IPv6Network

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

MAX_SITES = 4
MAX_NATS = 3
GROUP_NAME_MAX = 6
"""Site and NAT names go into link names (``wm-site-NAME``, ``wm-nat-NAME-w``), which IFNAMSIZ limits."""

SITE_BLOCKS: tuple[IPv4Network, ...] = tuple(IPv4Network("203.0.113.0/24").subnets(new_prefix=26))
NAT_BLOCKS: tuple[IPv4Network, ...] = tuple(IPv4Network("192.0.2.0/24").subnets(new_prefix=26))[1:]
PRIVATE_HOST_OFFSET = 10
"""The n-th host of a site or NAT LAN gets ``block[PRIVATE_HOST_OFFSET + n]``."""
GROUP_MAX = SITE_BLOCKS[0].num_addresses - PRIVATE_HOST_OFFSET - 2
"""Most hosts in one site or NAT (the last address of a /26 is its broadcast address)."""

ROUTER_OFFSET = 200
"""NAT router j's public address is ``UNDERLAY[ROUTER_OFFSET + j]`` (outside the hosts' .11-.70)."""
SSH_FORWARD_BASE = 2210
"""A NAT router forwards TCP ``SSH_FORWARD_BASE + i`` on its public address to NAT host i's sshd."""

UNDERLAY6 = IPv6Network("2001:db8::/64")
UNDERLAY6_GATEWAY = IPv6Interface("2001:db8::1/64")
OVERLAY6_CIDR = IPv6Network("fd77::/64")


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


def site_bridge(name: str) -> str:
    """The private bridge of site ``name``."""
    return link_name("site", name)


def router_netns(name: str) -> str:
    """The network namespace of NAT router ``name``."""
    return link_name("nat", name)


def lan_bridge(name: str) -> str:
    """The LAN bridge behind NAT router ``name``."""
    return link_name("lan", name)
