"""Which mesh network an ``import`` uses (issue 10, item 9).

A wg-quick ``Address`` may carry the interface's prefix (``10.0.0.1/24``) or none
(``10.0.0.1``, which wg-quick and ``ip`` read as a /32), as in the classic two-host tutorial. The
rules, in order:

1. ``--cidr`` (``--cidr6``) chooses the network; every address must be a host address in it;
2. else the files that give a prefix must agree on one network, and it must hold every address;
3. else (no file gives a prefix) the network is inferred: the smallest one that holds every address,
   at least a /24 for IPv4 (a /64 for IPv6), and the import says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network

from wiremesh.errors import ValidationError
from wiremesh.model.addressing import IPAddress, IPNetwork, covering_network, is_host_address

INFER_PREFIX = {4: 24, 6: 64}


@dataclass(frozen=True)
class Networks:
    """The mesh networks of an import, and what was inferred."""

    cidr: IPv4Network
    cidr6: IPv6Network | None
    notes: tuple[str, ...]


def _choose(
    family: int,
    addresses: list[tuple[str, IPv4Interface | IPv6Interface]],
    chosen: IPNetwork | None,
    notes: list[str],
) -> IPNetwork:
    hint = f"choose the mesh network with --cidr{'6' if family == 6 else ''} NETWORK"
    given = {
        iface.network for _, iface in addresses if iface.network.prefixlen < iface.max_prefixlen
    }
    if chosen is not None:
        net = chosen
        if given and given != {chosen}:
            listed = ", ".join(sorted(map(str, given)))
            notes.append(f"the files give the network {listed}; using {chosen} as asked")
    elif len(given) > 1:
        raise ValidationError(
            f"the files use different IPv{family} networks: {', '.join(sorted(map(str, given)))}",
            f"a mesh has one overlay network: make the Address prefixes agree, or {hint}",
        )
    elif given:
        net = next(iter(given))
    else:
        ips: list[IPAddress] = [iface.ip for _, iface in addresses]
        net = covering_network(ips, INFER_PREFIX[family])
        notes.append(
            f"no file gives the prefix of its IPv{family} Address: using {net}, the smallest "
            f"network of /{INFER_PREFIX[family]} or larger that holds every address ({hint} "
            "to choose another)"
        )
    for path, iface in addresses:
        if not is_host_address(net, iface.ip):
            raise ValidationError(
                f"{path}: Address {iface.ip} is not a host address of the mesh network {net}",
                f"{hint} that holds every node's address (and not as its network or broadcast "
                "address)",
            )
    return net


def mesh_networks(
    v4: list[tuple[str, IPv4Interface]],
    v6: list[tuple[str, IPv6Interface]],
    cidr: IPv4Network | None,
    cidr6: IPv6Network | None,
    hosts: int,
) -> Networks:
    """The IPv4 network (and the IPv6 one, when every one of ``hosts`` files has an IPv6
    address, or ``cidr6`` is given) for the imported nodes."""
    notes: list[str] = []
    net4 = _choose(4, list(v4), cidr, notes)
    assert isinstance(net4, IPv4Network)
    net6: IPv6Network | None = None
    if v6 and (len(v6) == hosts or cidr6 is not None):
        chosen = _choose(6, list(v6), cidr6, notes)
        assert isinstance(chosen, IPv6Network)
        net6 = chosen
    elif v6:
        notes.append(
            "not every file has an IPv6 Address: the mesh gets no IPv6 network, and these "
            "IPv6 addresses will not be kept: " + ", ".join(f"{p} {i.ip}" for p, i in v6)
        )
    return Networks(net4, net6, tuple(notes))
