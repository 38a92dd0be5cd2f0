"""wg-quick render/parse."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Network

import pytest
from hypothesis import given, settings

from tests.helpers import keys
from tests.unit.test_topology import inventories
from wiremesh.codec.wgquick import HiddenKey, KeyFile, LiteralKey, parse, render
from wiremesh.errors import ValidationError
from wiremesh.model.device import WantedDevice
from wiremesh.model.inventory import Inventory
from wiremesh.model.topology import wanted_mesh


def _same(device: WantedDevice, text: str) -> None:
    config = parse(text)
    assert config.managed
    assert config.interface.addresses == device.interface.addresses
    assert config.interface.listen_port == device.interface.listen_port
    assert config.interface.mtu == device.interface.mtu
    assert len(config.peers) == len(device.peers)
    for section, peer in zip(config.peers, device.peers, strict=True):
        assert section.comment == peer.name
        assert section.public_key == peer.public_key
        assert section.endpoint == peer.endpoint
        assert section.allowed_ips == peer.allowed_ips
        assert section.persistent_keepalive == peer.persistent_keepalive


@settings(max_examples=60, deadline=None)
@given(inventories())
def test_render_parse_round_trip(inventory: Inventory) -> None:
    private = keys(len(inventory.nodes))
    memo: dict[int, str] = {}
    mesh = wanted_mesh(inventory)
    for i, node in enumerate(inventory):
        text = render(mesh[node.name], LiteralKey(private[i]), memo=memo)
        _same(mesh[node.name], text)
        assert parse(text).interface.private_key == private[i]
        assert text == render(mesh[node.name], LiteralKey(private[i]))  # memo changes nothing


def test_key_file_mode_holds_no_key() -> None:
    inventory, _ = _inv()
    device = wanted_mesh(inventory)["n0"]
    text = render(device, KeyFile("/etc/wireguard/wg0.key"))
    assert "PrivateKey" not in text
    assert "PostUp" not in text  # the host adds the PrivateKey line itself
    assert "<hidden: on the host>" in render(device, HiddenKey("on the host"))


def _inv() -> tuple[Inventory, None]:
    from tests.helpers import simple_inventory

    inventory, _ = simple_inventory(3)
    return inventory, None


def test_parse_is_case_insensitive_and_accumulates() -> None:
    key = keys(2)
    text = f"""
    [interface]
    privatekey = {key[0].reveal()}   # inline comment
    ADDRESS = 10.0.0.1/24
    Address = fd00::1/64
    listenport = 51820

    # beta
    [PEER]
    PublicKey = {key[1].public_key()}
    EndPoint = [2001:db8::2]:51820
    AllowedIPs = 10.0.0.2/32
    allowedips = 172.16.0.0/24 , fd00::2/128
    PersistentKeepalive = off
    PresharedKey = {key[0].reveal()}
    """
    config = parse(text, "t.conf")
    assert config.interface.addresses[0] == IPv4Interface("10.0.0.1/24")
    assert len(config.interface.addresses) == 2
    peer = config.peers[0]
    assert peer.comment == "beta"
    assert str(peer.endpoint) == "[2001:db8::2]:51820"
    assert peer.allowed_ips == (
        IPv4Network("10.0.0.2/32"),
        IPv4Network("172.16.0.0/24"),
        IPv6Network("fd00::2/128"),
    )
    assert peer.persistent_keepalive is None
    assert peer.extra[0][0] == "presharedkey"
    assert not config.managed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[Peer]\nPublicKey = x", "expected one \\[Interface\\]"),
        ("[Interface]\n[Interface]", "found 2"),
        ("[Interface]\nListenPort = 99999", "t.conf:2: ListenPort"),
        ("[Interface]\nAddress = 10.0.0.300/24", "t.conf:2: Address"),
        (
            "[Interface]\n[Peer]\nAllowedIPs = 10.0.0.2/32",
            "t.conf:2: \\[Peer\\] without a PublicKey",
        ),
        ("[Interface]\nnonsense", "expected 'Key = Value'"),
        ("ListenPort = 1", "before any"),
        ("[Interface]\n[Wat]", "unknown section"),
    ],
)
def test_parse_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse(text, "t.conf")


def test_endpoint_without_port_is_an_error() -> None:
    key = keys(1)[0]
    text = f"[Interface]\n[Peer]\nPublicKey = {key.public_key()}\nEndpoint = 203.0.113.1\n"
    with pytest.raises(ValidationError, match="has no port"):
        parse(text, "t.conf")


def test_render_needs_peer_keys() -> None:
    from dataclasses import replace

    inventory, _ = _inv()
    node = replace(inventory.nodes[1], public_key=None)
    inventory = inventory.with_node(node)
    with pytest.raises(ValidationError, match="public key of peer 'n1' is not known"):
        render(wanted_mesh(inventory)["n0"], HiddenKey("x"))
    assert IPv4Address("10.0.0.1") == inventory.nodes[0].address
