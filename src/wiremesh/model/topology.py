"""From the inventory to the WireGuard device wanted on each node (pure).

Rules (issue 2, refined by sites):

- every node has every other node as a peer (a full mesh);
- the endpoint used toward a peer is its ``private_endpoint`` when both nodes share a ``site``, else its
  public ``endpoint`` (None when it has none: it will be learnt from its handshakes);
- AllowedIPs toward a peer are its /32 (and /128), plus the extra subnets it routes (``allowed_ips``);
- a node without an endpoint of its own (behind NAT) sends PersistentKeepalive to every peer, so that
  its NAT mapping stays open and peers keep learning where it is.
"""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network

from wiremesh.model.addressing import IPNetwork
from wiremesh.model.device import IPInterface, WantedDevice, WantedInterface, WantedPeer
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.inventory import Inventory, Node


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


def endpoint_toward(inventory: Inventory, local: Node, peer: Node) -> Endpoint | None:
    """The endpoint ``local`` uses to reach ``peer`` (port filled in), or None."""
    chosen = peer.private_endpoint if _uses_private(local, peer) else peer.endpoint
    if chosen is None:
        return None
    return chosen.with_port(inventory.listen_port(peer))


def _uses_private(local: Node, peer: Node) -> bool:
    return local.site is not None and local.site == peer.site and peer.private_endpoint is not None


def _keepalive(inventory: Inventory, node: Node) -> int | None:
    keepalive = inventory.mesh.keepalive
    return keepalive if node.endpoint is None and keepalive > 0 else None


def _peer(inventory: Inventory, local: Node, other: Node, keepalive: int | None) -> WantedPeer:
    return WantedPeer(
        name=other.name,
        public_key=other.public_key,
        endpoint=endpoint_toward(inventory, local, other),
        allowed_ips=peer_allowed_ips(other),
        persistent_keepalive=keepalive,
    )


def _interface(inventory: Inventory, node: Node) -> WantedInterface:
    return WantedInterface(
        name=inventory.mesh.interface,
        addresses=node_addresses(inventory, node),
        listen_port=inventory.listen_port(node),
        mtu=inventory.mesh.mtu if isinstance(inventory.mesh.mtu, int) else None,
    )


def wanted_device(inventory: Inventory, node: Node) -> WantedDevice:
    """The device wanted on ``node``: its interface and one peer per other node."""
    keepalive = _keepalive(inventory, node)
    peers = tuple(
        _peer(inventory, node, o, keepalive) for o in inventory.nodes if o.name != node.name
    )
    return WantedDevice(node=node.name, interface=_interface(inventory, node), peers=peers)


def wanted_mesh(inventory: Inventory) -> dict[str, WantedDevice]:
    """The wanted device of every node, by node name; equal to :func:`wanted_device` for each.

    A peer looks the same from every node of the same site with the same keepalive, so the peer
    values are made once per (site, keepalive) class and shared: a full mesh of N nodes costs about N
    peer values, not N*(N-1). That keeps ``render`` of 1,000 nodes well under a second of model work.
    """
    nodes = inventory.nodes
    classes: dict[tuple[str | None, int | None], list[WantedPeer]] = {}
    out: dict[str, WantedDevice] = {}
    for index, node in enumerate(nodes):
        keepalive = _keepalive(inventory, node)
        key = (node.site, keepalive)
        row = classes.get(key)
        if row is None:
            # The entry for ``node`` itself is made too but never used: it keeps indices aligned.
            row = classes[key] = [_peer(inventory, node, other, keepalive) for other in nodes]
        peers = tuple(row[:index] + row[index + 1 :])
        out[node.name] = WantedDevice(node.name, _interface(inventory, node), peers)
    return out
