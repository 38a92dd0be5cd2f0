"""Facts derived from observing the hosts (pure): learnt NAT endpoints, working direct paths, MTUs.

These feed :func:`wiremesh.model.topology.wanted_mesh`; see its module for how NAT pairs and relays
work.
"""

from __future__ import annotations

from collections.abc import Mapping

from wiremesh.model.endpoint import Endpoint
from wiremesh.model.health import HANDSHAKE_FRESH_S
from wiremesh.model.host import ObservedHost
from wiremesh.model.inventory import MTU_MIN_IPV4, MTU_MIN_IPV6, Inventory, Node
from wiremesh.model.keys import PublicKey
from wiremesh.model.topology import (
    Facts,
    endpoint_toward,
    is_nat_pair,
    relay_of,
)

WIREGUARD_OVERHEAD = 80  # IPv6 (40) + UDP (8) + WireGuard (32); wg-quick subtracts 80 too
DEFAULT_UNDERLAY_MTU = 1500


def nat_pairs(inventory: Inventory) -> list[tuple[Node, Node]]:
    """Pairs of nodes that have no endpoint toward each other."""
    nodes = [n for n in inventory.nodes if n.endpoint is None]
    return [
        (a, b) for i, a in enumerate(nodes) for b in nodes[i + 1 :] if is_nat_pair(inventory, a, b)
    ]


def _fresh(seen: ObservedHost | None, key: PublicKey | None) -> bool:
    if seen is None or seen.device is None or key is None:
        return False
    peer = seen.device.peer(key)
    if peer is None:
        return False
    age = peer.stats.handshake_age(seen.now)
    return age is not None and age <= HANDSHAKE_FRESH_S


def learnt_endpoints(
    inventory: Inventory,
    keys: Mapping[str, PublicKey | None],
    observed: Mapping[str, ObservedHost],
) -> dict[str, Endpoint]:
    """For each node without an endpoint, the address:port a node with an endpoint sees it at.

    The node's relay is asked first (it talks to every NAT node), then the others in inventory order;
    only a peer entry with a recent handshake counts (an old endpoint may be a dead NAT mapping).
    """
    out: dict[str, Endpoint] = {}
    public = [n for n in inventory.nodes if n.endpoint is not None]
    for node in inventory.nodes:
        key = keys.get(node.name)
        if node.endpoint is not None or key is None:
            continue
        relay = relay_of(inventory, node)
        ordered = sorted(public, key=lambda n: n.name != relay)
        for witness in ordered:
            seen = observed.get(witness.name)
            if seen is None or seen.device is None or not _fresh(seen, key):
                continue
            peer = seen.device.peer(key)
            if peer is not None and peer.endpoint is not None:
                out[node.name] = peer.endpoint
                break
    return out


def direct_pairs(
    inventory: Inventory,
    keys: Mapping[str, PublicKey | None],
    observed: Mapping[str, ObservedHost],
) -> frozenset[frozenset[str]]:
    """NAT pairs with a recent handshake on both sides: their direct path works."""
    out = set()
    for a, b in nat_pairs(inventory):
        if _fresh(observed.get(a.name), keys.get(b.name)) and _fresh(
            observed.get(b.name), keys.get(a.name)
        ):
            out.add(frozenset((a.name, b.name)))
    return frozenset(out)


def underlay_targets(
    inventory: Inventory, node: Node, learnt: Mapping[str, Endpoint]
) -> tuple[str, ...]:
    """The underlay addresses ``node`` sends to (literal IPs only), for MTU discovery."""
    out: list[str] = []
    for other in inventory.nodes:
        if other.name == node.name:
            continue
        endpoint = endpoint_toward(inventory, node, other) or learnt.get(other.name)
        if endpoint is not None and endpoint.is_ip and str(endpoint.host) not in out:
            out.append(str(endpoint.host))
    return tuple(out)


def auto_mtus(
    inventory: Inventory,
    observed: Mapping[str, ObservedHost],
    learnt: Mapping[str, Endpoint],
) -> dict[str, int]:
    """``mtu = "auto"``: per node, the smallest underlay MTU on its paths to its peers, minus 80.

    A path's MTU is the smaller of both ends' route MTUs toward each other (``ip route get``): a host
    cannot see its peer's smaller link, so both ends are asked; a peer that cannot name our address
    (we are behind NAT) counts with its smallest link. A node with no known path uses its default
    route's MTU. The result is never below the minimum the overlay needs (1280 with IPv6).
    """
    floor = MTU_MIN_IPV6 if inventory.mesh.cidr6 is not None else MTU_MIN_IPV4
    out: dict[str, int] = {}
    for node in inventory.nodes:
        seen = observed.get(node.name)
        if seen is None:
            continue
        values: list[int] = []
        for other in inventory.nodes:
            if other.name == node.name:
                continue
            there = endpoint_toward(inventory, node, other) or learnt.get(other.name)
            if there is not None and str(there.host) in seen.underlay.mtu:
                values.append(seen.underlay.mtu[str(there.host)])
            back = endpoint_toward(inventory, other, node) or learnt.get(node.name)
            other_seen = observed.get(other.name)
            if other_seen is None:
                continue
            if back is not None and str(back.host) in other_seen.underlay.mtu:
                values.append(other_seen.underlay.mtu[str(back.host)])
            else:  # the peer cannot name our address (we are behind NAT): its smallest link
                values += list(other_seen.underlay.mtu.values())
        if not values:
            values = [seen.underlay.default_mtu or DEFAULT_UNDERLAY_MTU]
        out[node.name] = max(floor, min(values) - WIREGUARD_OVERHEAD)
    return out


def derive_facts(
    inventory: Inventory,
    keys: Mapping[str, PublicKey | None],
    observed: Mapping[str, ObservedHost],
) -> Facts:
    """All facts from one observation of the hosts."""
    learnt = learnt_endpoints(inventory, keys, observed)
    mtu = auto_mtus(inventory, observed, learnt) if inventory.mesh.mtu == "auto" else {}
    return Facts(learnt=learnt, direct=direct_pairs(inventory, keys, observed), mtu=mtu)
