"""Which networks can carry a mesh, and which addresses can be an endpoint (pure).

Refused, because they cannot work (issue 10: ``init --cidr 0.0.0.0/0`` gave nodes 0.0.0.1):

- as a mesh network, any network that overlaps a range hosts cannot use for their own unicast
  addresses: "this network" 0.0.0.0/8 (RFC 1122 3.2.1.3), loopback 127.0.0.0/8, link-local
  169.254.0.0/16 (RFC 3927; clouds serve their metadata at 169.254.169.254), multicast 224.0.0.0/4,
  reserved 240.0.0.0/4 with the broadcast address 255.255.255.255 (RFC 1112, RFC 919); for IPv6 the
  unspecified and loopback addresses (RFC 4291 2.5.2-2.5.3), IPv4-mapped addresses (2.5.5.2),
  link-local fe80::/10 (names in /etc/hosts cannot carry the zone such an address needs) and
  multicast ff00::/8;
- as an endpoint, an address that is not one host's unicast address: unspecified (0.0.0.0/8, ::),
  loopback (the peer would be this host itself), multicast, the broadcast address.

Unusual but possible, so only warned about: an IPv4 mesh network outside the private ranges
(RFC 1918) and the shared address space (RFC 6598, 100.64.0.0/10): hosts of the Internet in it become
unreachable from the mesh; an IPv6 mesh network outside the unique local range fc00::/7 (RFC 4193).
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TYPE_CHECKING

from wiremesh.errors import ValidationError, quote
from wiremesh.model.addressing import IPAddress, IPNetwork

if TYPE_CHECKING:
    from wiremesh.model.inventory import Inventory

UNUSABLE4: tuple[tuple[IPv4Network, str], ...] = (
    (IPv4Network("0.0.0.0/8"), "'this network' 0.0.0.0/8"),
    (IPv4Network("127.0.0.0/8"), "the loopback network 127.0.0.0/8"),
    (IPv4Network("169.254.0.0/16"), "the link-local network 169.254.0.0/16"),
    (IPv4Network("224.0.0.0/4"), "the multicast range 224.0.0.0/4"),
    (IPv4Network("240.0.0.0/4"), "the reserved range 240.0.0.0/4 (with the broadcast address)"),
)
UNUSABLE6: tuple[tuple[IPv6Network, str], ...] = (
    (IPv6Network("::/128"), "the unspecified address ::"),
    (IPv6Network("::1/128"), "the loopback address ::1"),
    (IPv6Network("::ffff:0:0/96"), "the IPv4-mapped range ::ffff:0:0/96"),
    (IPv6Network("fe80::/10"), "the link-local range fe80::/10"),
    (IPv6Network("ff00::/8"), "the multicast range ff00::/8"),
)
USUAL4 = (
    IPv4Network("10.0.0.0/8"),
    IPv4Network("172.16.0.0/12"),
    IPv4Network("192.168.0.0/16"),
    IPv4Network("100.64.0.0/10"),
)
USUAL6 = (IPv6Network("fc00::/7"),)


def unusable_network(net: IPNetwork) -> str | None:
    """Why ``net`` cannot be a mesh network (the range it overlaps), or None when it can."""
    if isinstance(net, IPv4Network):
        return next((why for bad, why in UNUSABLE4 if net.overlaps(bad)), None)
    return next((why for bad, why in UNUSABLE6 if net.overlaps(bad)), None)


def unusual_network(net: IPNetwork) -> str | None:
    """A warning when ``net`` is a possible but unusual mesh network, else None."""
    if isinstance(net, IPv4Network):
        if any(net.subnet_of(usual) for usual in USUAL4):
            return None
        return (
            f"mesh cidr {net} is not private address space (RFC 1918: 10.0.0.0/8, 172.16.0.0/12, "
            "192.168.0.0/16) or shared address space (RFC 6598: 100.64.0.0/10): hosts on the "
            "Internet with addresses in it will be unreachable from the mesh"
        )
    if any(net.subnet_of(usual) for usual in USUAL6):
        return None
    return (
        f"mesh cidr6 {net} is not a unique local network (RFC 4193: fc00::/7, e.g. fd00:77::/64): "
        "hosts on the Internet with addresses in it will be unreachable from the mesh"
    )


def unusable_endpoint(host: IPAddress) -> str | None:
    """Why an endpoint at ``host`` cannot reach a peer, or None when it can."""
    if isinstance(host, IPv4Address):
        if host in IPv4Network("0.0.0.0/8"):
            return "an unspecified address ('this network', 0.0.0.0/8)"
        if host == IPv4Address("255.255.255.255"):
            return "the broadcast address"
    elif host == IPv6Address("::"):
        return "the unspecified address"
    if host.is_loopback:
        return "a loopback address (it would be this host itself)"
    if host.is_multicast:
        return "a multicast address"
    return None


def network_problems(cidr: IPv4Network, cidr6: IPv6Network | None) -> list[ValidationError]:
    """An error for each mesh network that cannot work (see :func:`unusable_network`)."""
    problems = []
    for key, net in (("cidr", cidr), ("cidr6", cidr6)):
        why = unusable_network(net) if net is not None else None
        if why is not None:
            example = "10.0.0.0/24" if key == "cidr" else "fd00:77::/64"
            problems.append(
                ValidationError(
                    f"mesh {key} {net} cannot be a mesh network: it overlaps {why}",
                    f"use a private network such as {example}",
                )
            )
    return problems


def warnings(inventory: Inventory) -> list[str]:
    """What is unusual but allowed about ``inventory`` (the CLI prints it on stderr)."""
    mesh = inventory.mesh
    found = [unusual_network(net) for net in (mesh.cidr, mesh.cidr6) if net is not None]
    return [w for w in found if w is not None]


def endpoint_problems(inventory: Inventory) -> list[ValidationError]:
    """An error for each endpoint no peer can reach (see :func:`unusable_endpoint`)."""
    problems = []
    for node in inventory.nodes:
        for key, endpoint in (
            ("endpoint", node.endpoint),
            ("private_endpoint", node.private_endpoint),
        ):
            if endpoint is None or isinstance(endpoint.host, str):
                continue
            why = unusable_endpoint(endpoint.host)
            if why is not None:
                problems.append(
                    ValidationError(
                        f"node {quote(node.name)}: {key} {endpoint} is {why}: no peer can reach it",
                        "give the address (or DNS name) at which the other nodes reach this host",
                    )
                )
    return problems
