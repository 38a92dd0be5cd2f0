"""From the inventory (and what was observed) to the WireGuard device wanted on each node (pure).

Rules:

- every node has every other node as a peer (a full mesh);
- the endpoint used toward a peer is its ``private_endpoint`` when both nodes share a ``site``, else its
  public ``endpoint`` (None when it has none: it will be learnt from its handshakes);
- AllowedIPs toward a peer are its /32 (and /128), plus the extra subnets it routes (``allowed_ips``);
- a node without an endpoint of its own (behind NAT) sends PersistentKeepalive to every peer, so that
  its NAT mapping stays open and peers keep learning where it is.

Two nodes that have no endpoint toward each other (both behind NAT) form a *NAT pair*. Each keeps the
other as a peer whose endpoint is the public address:port a peer with an endpoint observed for it
(:attr:`Facts.learnt`): with keepalives on both sides that punches a direct path through most NATs.
Until a direct handshake is seen (:attr:`Facts.direct`), the pair's traffic goes through the *relay*
(the ``relay`` of the pair's first node in the inventory, else the mesh's): each side routes the
other's addresses to the relay's peer entry, and the relay, which has both as ordinary peers,
forwards. The probe peer then carries no AllowedIPs (a prefix can belong to one peer only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network

from wiremesh.model.addressing import IPNetwork
from wiremesh.model.device import IPInterface, WantedDevice, WantedInterface, WantedPeer
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.inventory import Inventory, Node
from wiremesh.model.names import NodeName
from wiremesh.model.safe import ip_text, word


@dataclass(frozen=True)
class Facts:
    """What observing the hosts adds to the inventory (all optional: offline render has none)."""

    learnt: Mapping[str, Endpoint] = field(default_factory=dict)
    """Public address:port of nodes without an endpoint, as a peer with an endpoint sees them."""
    direct: frozenset[frozenset[str]] = frozenset()
    """NAT pairs whose direct path works (a recent handshake both ways)."""
    mtu: Mapping[str, int] = field(default_factory=dict)
    """Per-node MTU derived from the underlay, for ``mtu = "auto"``."""


NO_FACTS = Facts()


def node_addresses(inventory: Inventory, node: Node) -> tuple[IPInterface, ...]:
    """The interface addresses of ``node``, with the mesh prefix lengths."""
    mesh = inventory.mesh
    out: list[IPInterface] = [IPv4Interface(f"{node.address}/{mesh.cidr.prefixlen}")]
    if node.address6 is not None and mesh.cidr6 is not None:
        out.append(IPv6Interface(f"{node.address6}/{mesh.cidr6.prefixlen}"))
    return tuple(out)


def peer_allowed_ips(node: Node) -> tuple[IPNetwork, ...]:
    """What a peer routes to ``node``: its own addresses and the subnets behind it."""
    out: list[IPNetwork] = [IPv4Network(f"{node.address}/32")]
    if node.address6 is not None:
        out.append(IPv6Network(f"{node.address6}/128"))
    out.extend(node.allowed_ips)
    return tuple(out)


def _uses_private(local: Node, peer: Node) -> bool:
    return local.site is not None and local.site == peer.site and peer.private_endpoint is not None


def endpoint_toward(inventory: Inventory, local: Node, peer: Node) -> Endpoint | None:
    """The configured endpoint ``local`` uses to reach ``peer`` (port filled in), or None."""
    chosen = peer.private_endpoint if _uses_private(local, peer) else peer.endpoint
    if chosen is None:
        return None
    return chosen.with_port(inventory.listen_port(peer))


def is_nat_pair(inventory: Inventory, a: Node, b: Node) -> bool:
    """True when neither node has an endpoint toward the other: no handshake can be started."""
    return endpoint_toward(inventory, a, b) is None and endpoint_toward(inventory, b, a) is None


def relay_of(inventory: Inventory, node: Node) -> NodeName | None:
    """The relay ``node`` names, else the mesh's."""
    return node.relay or inventory.mesh.relay


def pair_relay(inventory: Inventory, a: Node, b: Node) -> NodeName | None:
    """The relay of a NAT pair: the relay of whichever of the two comes first in the inventory.

    Both sides must use the same relay: WireGuard accepts a packet from a peer only if its source is
    in that peer's AllowedIPs, so b must route a's address to the relay that forwards a's packets.
    """
    order = inventory.positions
    first = a if order.get(a.name, 0) <= order.get(b.name, 0) else b
    relay = relay_of(inventory, first)
    if relay is None or relay in (a.name, b.name):
        return None
    return relay


def relayed(inventory: Inventory, a: Node, b: Node, facts: Facts) -> NodeName | None:
    """The relay the pair (a, b) goes through now, or None when it goes direct (or cannot)."""
    if not is_nat_pair(inventory, a, b) or frozenset((a.name, b.name)) in facts.direct:
        return None
    return pair_relay(inventory, a, b)


def _keepalive(inventory: Inventory, node: Node) -> int | None:
    keepalive = inventory.mesh.keepalive
    return keepalive if node.endpoint is None and keepalive > 0 else None


def _mtu(inventory: Inventory, node: Node, facts: Facts) -> int | None:
    mtu = inventory.mesh.mtu
    if isinstance(mtu, int):
        return mtu
    return facts.mtu.get(node.name)  # "auto" and not measured: let wg-quick choose


def _interface(inventory: Inventory, node: Node, facts: Facts) -> WantedInterface:
    return WantedInterface(
        name=inventory.mesh.interface,
        addresses=node_addresses(inventory, node),
        listen_port=inventory.listen_port(node),
        mtu=_mtu(inventory, node, facts),
    )


def _peer(
    inventory: Inventory, local: Node, other: Node, keepalive: int | None, facts: Facts
) -> WantedPeer:
    endpoint = endpoint_toward(inventory, local, other)
    allowed = peer_allowed_ips(other)
    if endpoint is None and local.endpoint is None and is_nat_pair(inventory, local, other):
        endpoint = facts.learnt.get(other.name)
        if relayed(inventory, local, other, facts) is not None:
            allowed = ()  # routed through the relay; this entry only probes the direct path
    return WantedPeer(
        name=other.name,
        public_key=other.public_key,
        endpoint=endpoint,
        allowed_ips=allowed,
        persistent_keepalive=keepalive,
    )


def wanted_device(inventory: Inventory, node: Node, facts: Facts = NO_FACTS) -> WantedDevice:
    """The device wanted on ``node``: its interface and one peer per other node."""
    keepalive = _keepalive(inventory, node)
    peers = [
        _peer(inventory, node, other, keepalive, facts)
        for other in inventory.nodes
        if other.name != node.name
    ]
    if node.endpoint is None:
        peers = _with_relayed(inventory, node, peers, facts)
    return WantedDevice(node.name, _interface(inventory, node, facts), tuple(peers))


def _with_relayed(
    inventory: Inventory, node: Node, peers: list[WantedPeer], facts: Facts
) -> list[WantedPeer]:
    """Add the addresses of the nodes reached through a relay to the relay's peer entry."""
    extra: dict[str, list[IPNetwork]] = {}
    for other in inventory.nodes:
        if other.name == node.name:
            continue
        relay = relayed(inventory, node, other, facts)
        if relay is not None:
            extra.setdefault(relay, []).extend(peer_allowed_ips(other))
    if not extra:
        return peers
    out = []
    for peer in peers:
        more = extra.get(peer.name)
        out.append(
            WantedPeer(
                peer.name,
                peer.public_key,
                peer.endpoint,
                peer.allowed_ips + tuple(more),
                peer.persistent_keepalive,
            )
            if more
            else peer
        )
    return out


def wanted_mesh(inventory: Inventory, facts: Facts = NO_FACTS) -> dict[str, WantedDevice]:
    """The wanted device of every node, by node name; equal to :func:`wanted_device` for each.

    A peer looks the same from every node of the same site with the same keepalive, so for nodes
    with an endpoint the peer values are made once per (site, keepalive) class and shared: a full
    mesh of N nodes costs about N peer values, not N*(N-1). That keeps ``render`` of 1,000 nodes well
    under a second of model work. Nodes without an endpoint (NAT pairs, relays) are made one by one.
    """
    nodes = inventory.nodes
    classes: dict[tuple[str | None, int | None], list[WantedPeer]] = {}
    out: dict[str, WantedDevice] = {}
    for index, node in enumerate(nodes):
        if node.endpoint is None:
            out[node.name] = wanted_device(inventory, node, facts)
            continue
        keepalive = _keepalive(inventory, node)
        key = (node.site, keepalive)
        row = classes.get(key)
        if row is None:
            # The entry for ``node`` itself is made too but never used: it keeps indices aligned.
            row = classes[key] = [_peer(inventory, node, o, keepalive, facts) for o in nodes]
        peers = tuple(row[:index] + row[index + 1 :])
        out[node.name] = WantedDevice(node.name, _interface(inventory, node, facts), peers)
    return out


def hosts_block(inventory: Inventory) -> tuple[str, ...]:
    """The lines of the mesh's /etc/hosts block: ``<address> <node>.<mesh>`` for every address.

    Each field passes a guard (:mod:`wiremesh.model.safe`): one blank-free printable word, no ``#``
    and no zone id, so that each line holds exactly one address and one name (hosts(5)).
    """
    lines = []
    for node in inventory.nodes:
        name = word(f"{node.name}.{inventory.mesh.name}", "a host name in /etc/hosts")
        lines.append(f"{ip_text(node.address, 'an address in /etc/hosts')} {name}")
        if node.address6 is not None:
            lines.append(f"{ip_text(node.address6, 'an address in /etc/hosts')} {name}")
    return tuple(lines)


def active_relays(inventory: Inventory, facts: Facts = NO_FACTS) -> set[str]:
    """The nodes that relay at least one NAT pair now (pairs exist only among nodes without an
    endpoint, so this looks at those only)."""
    hidden = [n for n in inventory.nodes if n.endpoint is None]
    out: set[str] = set()
    for i, a in enumerate(hidden):
        for b in hidden[i + 1 :]:
            relay = relayed(inventory, a, b, facts)
            if relay is not None:
                out.add(relay)
    return out


def forwarding_needed(
    inventory: Inventory, node: Node, facts: Facts = NO_FACTS, relays: set[str] | None = None
) -> tuple[bool, bool]:
    """Whether ``node`` must forward IPv4 / IPv6: it relays a NAT pair, or routes subnets behind it.
    ``relays`` (from :func:`active_relays`) saves recomputing them for every node."""
    v4 = any(n.version == 4 for n in node.allowed_ips)
    v6 = any(n.version == 6 for n in node.allowed_ips)
    if node.name in (relays if relays is not None else active_relays(inventory, facts)):
        v4 = True
        v6 = v6 or inventory.mesh.cidr6 is not None
    return v4, v6
