"""Topology properties of rendered meshes."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import keys, wg_pubkey
from wiremesh.codec.wgquick import LiteralKey, parse, render
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.inventory import Inventory, MeshSettings, Node
from wiremesh.model.keys import PrivateKey
from wiremesh.model.names import NodeName
from wiremesh.model.topology import wanted_device, wanted_mesh


@st.composite
def inventories(draw: st.DrawFn) -> Inventory:
    n = draw(st.integers(min_value=1, max_value=24))
    private = keys(n)
    offsets = draw(st.lists(st.integers(1, 250), min_size=n, max_size=n, unique=True))
    nodes = []
    for i in range(n):
        site = draw(st.sampled_from([None, "a", "b"]))
        public = draw(st.booleans())
        subnets = (IPv4Network(f"172.16.{i}.0/24"),) if draw(st.booleans()) else ()
        nodes.append(
            Node(
                name=NodeName(f"node-{i}"),
                address=IPv4Address(f"10.1.0.{offsets[i]}"),
                endpoint=Endpoint(IPv4Address(f"203.0.113.{i + 1}")) if public else None,
                site=site,
                private_endpoint=Endpoint(IPv4Address(f"192.0.2.{i + 1}"), 51000) if site else None,
                public_key=private[i].public_key(),
                allowed_ips=subnets,
            )
        )
    return Inventory(MeshSettings(cidr=IPv4Network("10.1.0.0/24")), tuple(nodes))


@settings(max_examples=60, deadline=None)
@given(inventories())
def test_every_node_has_exactly_the_others_as_peers(inventory: Inventory) -> None:
    mesh = wanted_mesh(inventory)
    names = set(inventory.names())
    for node in inventory:
        device = mesh[node.name]
        assert [p.name for p in device.peers].count(node.name) == 0
        assert {p.name for p in device.peers} == names - {node.name}
        assert len(device.peers) == len(inventory.nodes) - 1
        assert device == wanted_device(inventory, node)  # shared peers change nothing


@settings(max_examples=60, deadline=None)
@given(inventories())
def test_allowed_ips_are_pairwise_disjoint(inventory: Inventory) -> None:
    for device in wanted_mesh(inventory).values():
        nets = [net for peer in device.peers for net in peer.allowed_ips]
        for i, a in enumerate(nets):
            for b in nets[i + 1 :]:
                assert a.version != b.version or not a.overlaps(b), (a, b)


@settings(max_examples=60, deadline=None)
@given(inventories())
def test_endpoints_and_keepalive_rules(inventory: Inventory) -> None:
    for node in inventory:
        for peer in wanted_device(inventory, node).peers:
            other = inventory.node(peer.name)
            if node.site is not None and node.site == other.site:
                assert peer.endpoint == other.private_endpoint
            elif other.endpoint is None:
                assert peer.endpoint is None
            else:
                assert peer.endpoint == other.endpoint.with_port(51820)
            assert (peer.persistent_keepalive == 25) == (node.endpoint is None)


@settings(max_examples=20, deadline=None)
@given(inventories())
def test_peer_keys_equal_wg_pubkey_of_their_private_keys(inventory: Inventory) -> None:
    private: dict[str, PrivateKey] = dict(
        zip(inventory.names(), keys(len(inventory.nodes)), strict=True)
    )
    node = inventory.nodes[0]
    text = render(wanted_device(inventory, node), LiteralKey(private[node.name]))
    config = parse(text)
    for section in config.peers:
        assert section.comment is not None
        assert section.public_key.b64 == wg_pubkey(private[section.comment].reveal())


def test_same_site_without_private_endpoint_uses_public() -> None:
    inventory, _ = _two()
    a, b = inventory.nodes
    inventory = inventory.with_node(replace(a, site="x")).with_node(replace(b, site="x"))
    peer = wanted_device(inventory, inventory.nodes[0]).peers[0]
    assert peer.endpoint == Endpoint(IPv4Address("203.0.113.2"), 51820)


def _two() -> tuple[Inventory, None]:
    private = keys(2)
    nodes = tuple(
        Node(
            name=NodeName(f"n{i}"),
            address=IPv4Address(f"10.0.0.{i + 1}"),
            endpoint=Endpoint(IPv4Address(f"203.0.113.{i + 1}")),
            public_key=private[i].public_key(),
        )
        for i in range(2)
    )
    return Inventory(MeshSettings(cidr=IPv4Network("10.0.0.0/24")), nodes), None
