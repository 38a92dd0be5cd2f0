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


PeerCache = dict[tuple[str, bool, int | None], WantedPeer]


def _uses_private(local: Node, peer: Node) -> bool:
    return local.site is not None and local.site == peer.site and peer.private_endpoint is not None


def _peer(inventory: Inventory, local: Node, other: Node, keepalive: int | None) -> WantedPeer:
    return WantedPeer(
        name=other.name,
        public_key=other.public_key,
        endpoint=endpoint_toward(inventory, local, other),
        allowed_ips=peer_allowed_ips(other),
        persistent_keepalive=keepalive,
    )


def _device(inventory: Inventory, node: Node, cache: PeerCache | None) -> WantedDevice:
    mesh = inventory.mesh
    keepalive = mesh.keepalive if node.endpoint is None and mesh.keepalive > 0 else None
    peers: list[WantedPeer] = []
    for other in inventory.nodes:
        if other.name == node.name:
            continue
        if cache is None:
            peers.append(_peer(inventory, node, other, keepalive))
            continue
        # A peer looks the same from every node with the same site relation and keepalive, so a
        # full mesh of N nodes needs about N peer values, not N*(N-1).
        key = (other.name, _uses_private(node, other), keepalive)
        peer = cache.get(key)
        if peer is None:
            peer = cache[key] = _peer(inventory, node, other, keepalive)
        peers.append(peer)
    interface = WantedInterface(
        name=mesh.interface,
        addresses=node_addresses(inventory, node),
        listen_port=inventory.listen_port(node),
        mtu=mesh.mtu,
    )
    return WantedDevice(node=node.name, interface=interface, peers=tuple(peers))


def wanted_device(inventory: Inventory, node: Node) -> WantedDevice:
    """The device wanted on ``node``: its interface and one peer per other node."""
    return _device(inventory, node, None)


def wanted_mesh(inventory: Inventory) -> dict[str, WantedDevice]:
    """The wanted device of every node, by node name (peer values are shared between devices)."""
    cache: PeerCache = {}
    return {node.name: _device(inventory, node, cache) for node in inventory.nodes}
