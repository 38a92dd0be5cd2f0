"""Parsing what hosts answer: the observe script, wg dumps, ping summaries, health."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network

import pytest

from tests.helpers import keys
from wiremesh.codec.observe import parse_observation
from wiremesh.errors import OperationError
from wiremesh.model.health import mesh_health, node_status, parse_ping
from wiremesh.remote import scripts

K = [k.public_key().b64 for k in keys(3)]
OUTPUT = f"""\
@@wiremesh tools
wg
wg-quick
ip
wireguard-go
@@wiremesh os
ubuntu debian
@@wiremesh kernel
missing
@@wiremesh systemd
running
enabled
@@wiremesh now
1000
@@wiremesh pubkey
{K[0]}
@@wiremesh config
managed
# wiremesh: managed file: node a of mesh m
[Interface]
Address = 10.0.0.1/24
@@wiremesh dump
(hidden)\t{K[0]}\t51820\toff
{K[1]}\t(none)\t198.51.100.2:51820\t10.0.0.2/32\t990\t100\t200\toff
{K[2]}\t(none)\t(none)\t10.0.0.3/32,172.16.0.0/24\t0\t0\t0\t25
@@wiremesh links
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT
2: eth0@if9: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT
7: wg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420 qdisc noqueue state UNKNOWN mode DEFAULT
@@wiremesh addrs
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eth0    inet 198.51.100.1/24 scope global eth0\\       valid_lft forever preferred_lft forever
7: wg0    inet 10.0.0.1/24 scope global wg0\\       valid_lft forever preferred_lft forever
7: wg0    inet6 fe80::1/64 scope link \\       valid_lft forever preferred_lft forever
@@wiremesh routes
10.0.0.0/24 dev wg0 proto kernel scope link src 10.0.0.1
172.16.0.0/24 dev wg0 scope link
198.51.100.0/24 dev eth0 proto kernel scope link src 198.51.100.1
10.0.0.0/8 via 198.51.100.254 dev eth0
local 10.0.0.1 dev wg0 table local proto kernel scope host src 10.0.0.1
fe80::/64 dev wg0 proto kernel metric 256 pref medium
multicast ff00::/8 dev wg0 table local proto kernel metric 256 pref medium
@@wiremesh hosts
present
10.0.0.1 a.m
@@wiremesh forward
1
0
@@wiremesh underlay
@ 198.51.100.2
198.51.100.2 dev eth0 src 198.51.100.1 uid 0 \\    cache
@ 198.51.100.3
198.51.100.3 dev eth0 src 198.51.100.1 uid 0 \\    cache mtu 1280
@@wiremesh files
/etc/rancher/k3s/config.yaml yes 600 abc
/etc/other missing
@@wiremesh end
"""


def test_observation_is_parsed() -> None:
    seen = parse_observation("wg0", OUTPUT)
    assert seen.missing_tools() == []
    assert seen.os.family == "debian"
    assert seen.systemd and seen.service_enabled
    assert seen.backend == "wireguard-go"
    assert seen.public_key is not None and seen.public_key.b64 == K[0]
    assert seen.config is not None and seen.config.managed
    assert seen.config.text is not None and "Address = 10.0.0.1/24" in seen.config.text
    assert seen.device is not None
    assert seen.device.addresses == (IPv4Interface("10.0.0.1/24"),)
    assert seen.device.mtu == 1420 and seen.link_up
    second = seen.device.peers[1]
    assert second.endpoint is None and second.persistent_keepalive == 25
    assert second.allowed_ips[1] == IPv4Network("172.16.0.0/24")
    assert seen.device.peers[0].stats.handshake_age(seen.now) == 10
    assert [(str(r.network), r.protocol) for r in seen.routes] == [
        ("10.0.0.0/24", "kernel"),
        ("172.16.0.0/24", "boot"),
    ]
    assert seen.hosts_block == ("10.0.0.1 a.m",)
    assert seen.forwarding == (True, False)
    assert seen.underlay.mtu == {"198.51.100.2": 1500, "198.51.100.3": 1280}
    assert [(str(r.network), r.device) for r in seen.other_routes] == [
        ("198.51.100.0/24", "eth0"),
        ("10.0.0.0/8", "eth0"),
    ]
    assert seen.other_addresses == (("198.51.100.1/24", "eth0"),)
    assert seen.files["/etc/rancher/k3s/config.yaml"].managed
    assert not seen.files["/etc/other"].exists


def test_cut_short_answers_are_errors() -> None:
    with pytest.raises(OperationError, match="cut short"):
        parse_observation("wg0", OUTPUT.replace("@@wiremesh end\n", ""))


def test_missing_tools_name_the_package() -> None:
    text = OUTPUT.replace("wg-quick\n", "").replace("wireguard-go\n", "")
    seen = parse_observation("wg0", text)
    assert seen.missing_tools() == ["wg-quick", "wireguard-go"]
    assert seen.os.install_hint(seen.missing_tools()) == (
        "on the host run: apt-get install -y wireguard-go wireguard-tools"
    )


def test_observe_script_never_prints_keys_in_the_clear() -> None:
    script = scripts.observe("wg0")
    assert '$1 = "(hidden)"' in script and '$2 = "(hidden)"' in script
    assert "privatekey" in script  # the filter that drops PrivateKey lines from the config
    assert "cat /etc/wireguard/wg0.key" not in script


def test_health_and_ping() -> None:
    seen = parse_observation("wg0", OUTPUT)
    from ipaddress import IPv4Address

    from wiremesh.model.health import Member
    from wiremesh.model.keys import PublicKey

    members = {
        name: Member(name, PublicKey(key), IPv4Address(f"10.0.0.{i + 1}"))
        for i, (name, key) in enumerate(zip("abc", K, strict=True))
    }
    status = node_status("a", seen, members)
    assert [p.up for p in status.peers] == [True, False]
    assert [p.link for p in status.peers] == ["direct", "down"]
    assert status.peers[1].reason == (
        "keepalives every 25 s, but no handshake with c in the last 180 s"
    )
    health = mesh_health([status], None)
    assert (health.links_expected, health.links_up) == (0, 1)
    ping = parse_ping(
        "a", {"10.0.0.2": "b", "10.0.0.3": "c"}, "10.0.0.2 3 3 0.41\n10.0.0.3 3 0 -\n"
    )
    assert [(p.target, p.loss, p.rtt_ms) for p in ping] == [("b", 0.0, 0.41), ("c", 1.0, None)]
