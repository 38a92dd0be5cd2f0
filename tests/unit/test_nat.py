"""Topology of nodes behind NAT: relays, probes of the direct path, facts from observations, MTU."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from tests.helpers import keys
from wiremesh.model.device import ObservedDevice, ObservedPeer, PeerStats
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.facts import auto_mtus, derive_facts, direct_pairs, learnt_endpoints, nat_pairs
from wiremesh.model.host import ObservedHost, OsInfo, OtherRoute, Underlay, conflicts
from wiremesh.model.inventory import Inventory, MeshSettings, Node
from wiremesh.model.keys import PublicKey
from wiremesh.model.names import NodeName
from wiremesh.model.topology import (
    NO_FACTS,
    Facts,
    forwarding_needed,
    hosts_block,
    wanted_device,
    wanted_mesh,
)

PUB = Endpoint(IPv4Address("198.51.100.11"))


def mesh(relay: str | None = "p1") -> Inventory:
    """p1, p2 public; h1, h2 behind NAT (no endpoint)."""
    k = keys(4)
    nodes = (
        Node(NodeName("p1"), IPv4Address("10.0.0.1"), endpoint=PUB, public_key=k[0].public_key()),
        Node(
            NodeName("p2"),
            IPv4Address("10.0.0.2"),
            endpoint=Endpoint(IPv4Address("198.51.100.12")),
            public_key=k[1].public_key(),
        ),
        Node(NodeName("h1"), IPv4Address("10.0.0.3"), public_key=k[2].public_key()),
        Node(NodeName("h2"), IPv4Address("10.0.0.4"), public_key=k[3].public_key()),
    )
    settings = MeshSettings(
        cidr=IPv4Network("10.0.0.0/24"), relay=NodeName(relay) if relay else None
    )
    return Inventory(settings, nodes)


def _allowed(inv: Inventory, node: str, peer: str, facts: Facts = NO_FACTS) -> set[str]:
    device = wanted_device(inv, inv.node(node), facts)
    found = device.peer(peer)
    assert found is not None
    return {str(n) for n in found.allowed_ips}


def test_nat_pair_goes_through_the_relay_until_direct_works() -> None:
    inv = mesh()
    assert [(a.name, b.name) for a, b in nat_pairs(inv)] == [("h1", "h2")]
    # relayed: h2's address rides on h1's peer entry for the relay; the probe entry routes nothing
    assert _allowed(inv, "h1", "p1") == {"10.0.0.1/32", "10.0.0.4/32"}
    assert _allowed(inv, "h1", "h2") == set()
    assert _allowed(inv, "h2", "p1") == {"10.0.0.1/32", "10.0.0.3/32"}
    assert _allowed(inv, "p1", "h1") == {"10.0.0.3/32"}  # the relay routes them as usual
    assert forwarding_needed(inv, inv.node("p1")) == (True, False)
    assert forwarding_needed(inv, inv.node("p2")) == (False, False)
    # with learnt public addresses the probe gets an endpoint; once direct works, routes move
    learnt = {"h1": Endpoint(IPv4Address("198.51.100.201"), 40001)}
    device = wanted_device(inv, inv.node("h2"), Facts(learnt=learnt))
    probe = device.peer("h1")
    assert probe is not None and probe.endpoint == learnt["h1"]
    direct = Facts(learnt=learnt, direct=frozenset({frozenset(("h1", "h2"))}))
    assert _allowed(inv, "h1", "h2", direct) == {"10.0.0.4/32"}
    assert _allowed(inv, "h1", "p1", direct) == {"10.0.0.1/32"}
    assert forwarding_needed(inv, inv.node("p1"), direct) == (False, False)


def test_without_relay_the_pair_only_probes() -> None:
    inv = mesh(relay=None)
    assert _allowed(inv, "h1", "h2") == {"10.0.0.4/32"}
    assert _allowed(inv, "h1", "p1") == {"10.0.0.1/32"}


def test_relay_of_the_first_node_is_used_by_both() -> None:
    inv = mesh()
    h2 = replace(inv.node("h2"), relay=NodeName("p2"))
    inv = inv.with_node(h2)
    # h1 comes first in the inventory: the pair uses p1 on both sides
    assert "10.0.0.3/32" in _allowed(inv, "h2", "p1")
    assert "10.0.0.3/32" not in _allowed(inv, "h2", "p2")


def test_allowed_ips_stay_disjoint_and_mesh_matches_device() -> None:
    inv = mesh()
    facts = Facts(learnt={"h1": PUB})
    for name, device in wanted_mesh(inv, facts).items():
        assert device == wanted_device(inv, inv.node(name), facts)
        nets = [n for p in device.peers for n in p.allowed_ips]
        assert len(nets) == len(set(nets))


def _observed(
    peers: dict[str, tuple[Endpoint | None, int]],
    now: int = 1000,
    mtu: dict[str, int] | None = None,
) -> ObservedHost:
    inv = mesh()
    by_name: dict[str, PublicKey] = {n.name: n.public_key for n in inv if n.public_key}
    device = ObservedDevice(
        "wg0",
        None,
        51820,
        tuple(
            ObservedPeer(by_name[n], ep, (), None, PeerStats(hs, 1, 1))
            for n, (ep, hs) in peers.items()
        ),
    )
    return ObservedHost(
        frozenset({"wg", "wg-quick", "ip"}),
        OsInfo(),
        True,
        False,
        False,
        now,
        None,
        None,
        device,
        link_up=True,
        underlay=Underlay(mtu or {}, 1500),
    )


def test_facts_from_observations() -> None:
    inv = mesh()
    k: dict[str, PublicKey | None] = {n.name: n.public_key for n in inv}
    seen_h1 = Endpoint(IPv4Address("198.51.100.201"), 40001)
    observed = {
        "p1": _observed({"h1": (seen_h1, 990), "h2": (None, 0)}),
        "p2": _observed({"h2": (Endpoint(IPv4Address("198.51.100.201"), 40002), 500)}),
        "h1": _observed({"h2": (None, 995)}),
        "h2": _observed({"h1": (seen_h1, 996)}),
    }
    learnt = learnt_endpoints(inv, k, observed)
    assert learnt == {"h1": seen_h1}  # h2's only sighting is 500 s old: a dead NAT mapping
    assert direct_pairs(inv, k, observed) == frozenset({frozenset(("h1", "h2"))})
    facts = derive_facts(inv, k, observed)
    assert facts.mtu == {}  # mtu is a number in this mesh


def test_auto_mtu_takes_the_smallest_end_of_each_path() -> None:
    inv = mesh()
    inv = replace(inv, mesh=replace(inv.mesh, mtu="auto"))
    observed = {
        "p1": _observed({}, mtu={"198.51.100.12": 1500}),
        "p2": _observed({}, mtu={"198.51.100.11": 1280}),  # p2's own link is small
        "h1": _observed({}, mtu={"198.51.100.11": 1500, "198.51.100.12": 1500}),
    }
    mtus = auto_mtus(inv, observed, {})
    assert mtus["p2"] == 1200
    assert mtus["p1"] == 1200  # p1's path to p2 is limited by p2's end
    assert mtus["h1"] == 1200  # and so is h1's
    device = wanted_device(inv, inv.node("p1"), Facts(mtu=mtus))
    assert device.interface.mtu == 1200
    assert wanted_device(inv, inv.node("p1")).interface.mtu is None  # not measured: wg-quick's


def test_auto_mtu_floor_with_ipv6_overlay() -> None:
    inv = mesh()
    inv = replace(inv, mesh=replace(inv.mesh, mtu="auto", cidr6=IPv6Network("fd00::/64")))
    observed = {"p1": _observed({}, mtu={"198.51.100.12": 1300})}
    assert auto_mtus(inv, observed, {})["p1"] == 1280


def test_hosts_block_and_conflicts() -> None:
    inv = mesh()
    assert hosts_block(inv)[:2] == ("10.0.0.1 p1.mesh", "10.0.0.2 p2.mesh")
    host = replace(
        _observed({}),
        other_routes=(
            OtherRoute(IPv4Network("10.0.0.0/8"), "eth1", "unicast"),
            OtherRoute(IPv4Network("192.0.2.0/24"), "eth0", "unicast"),
            OtherRoute(IPv4Network("10.0.0.0/24"), "wg0", "unicast"),
        ),
        other_addresses=(("10.0.0.200/16", "docker0"),),
    )
    found = conflicts(host, (IPv4Network("10.0.0.0/24"),), "wg0")
    assert found == [
        "route 10.0.0.0/8 dev eth1 overlaps the mesh network 10.0.0.0/24",
        "address 10.0.0.200/16 on docker0 overlaps the mesh network 10.0.0.0/24",
    ]
