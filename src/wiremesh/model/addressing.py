"""Overlay address allocation: the lowest free host address of the mesh network.

Allocation never renumbers: existing addresses are fixed inputs, and only new nodes get a new one.
"""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_network

from wiremesh.errors import ValidationError, quote

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network


def refuse_zone(text: str, what: str) -> str:
    """``text`` if it holds no IPv6 zone id (``fe80::1%eth0``); else a :class:`ValidationError`.

    Python's ``ipaddress`` accepts anything after ``%`` (a newline, ``;``, ``$()``) and keeps it in
    the value's text, which would end up in the files wiremesh writes (issue 10). No value of an
    inventory needs one: overlay addresses and networks belong to the WireGuard interface itself,
    and endpoints with a scope (link-local peers) are refused too, as documented in docs/security.md.
    """
    if "%" in text:
        raise ValidationError(
            f"{what} {quote(text)} has an IPv6 zone id ('%...'), which wiremesh does not accept",
            "write the address without '%' and what follows it; for endpoints use a global or ULA "
            "address, or a DNS name (link-local endpoints are not supported)",
        )
    return text


def is_host_address(network: IPNetwork, address: IPAddress) -> bool:
    """True when ``address`` may be given to a node of ``network``.

    The network address is never a host. For IPv4 the broadcast address is not either; for IPv6 the
    subnet-router anycast address (the network address, RFC 4291 2.6.1) is already excluded.
    """
    if address.version != network.version or address not in network:
        return False
    if address == network.network_address:
        return False
    return not (isinstance(network, IPv4Network) and address == network.broadcast_address)


def covering_network(addresses: list[IPAddress], longest: int) -> IPNetwork:
    """The smallest network that holds every one of ``addresses`` (all of one family) and whose
    prefix is at most ``longest`` bits (``import`` infers a mesh network so: at least a /24)."""
    first = addresses[0]
    prefix = min(longest, first.max_prefixlen)
    while True:
        net = ip_network((first, prefix), strict=False)
        if all(a in net for a in addresses):
            return net
        prefix -= 1


def host_capacity(network: IPNetwork) -> int:
    """How many node addresses ``network`` holds."""
    size = network.num_addresses - 1
    if isinstance(network, IPv4Network):
        size -= 1
    return max(size, 0)


def allocate(network: IPNetwork, used: Iterable[IPAddress], what: str = "mesh") -> IPAddress:
    """The lowest host address of ``network`` that is not in ``used``.

    Raises :class:`ValidationError` when the network is full.
    """
    taken = {int(a) for a in used if a.version == network.version and a in network}
    first = int(network.network_address) + 1
    last = int(network.broadcast_address) - (1 if isinstance(network, IPv4Network) else 0)
    candidate = first
    # Walk the taken set in order: O(n log n), no scan of the whole (possibly /64) network.
    for value in sorted(t for t in taken if t >= first):
        if value > candidate:
            break
        if value == candidate:
            candidate += 1
    if candidate > last:
        raise ValidationError(
            f"{what} network {network} is full: all {host_capacity(network)} addresses are in use",
            "remove nodes you no longer need, or move the mesh to a larger network "
            "(a larger 'cidr' in [mesh], e.g. a /16)",
        )
    if isinstance(network, IPv4Network):
        return IPv4Address(candidate)
    return IPv6Address(candidate)
