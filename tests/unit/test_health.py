"""Status that tells the truth (issue 10, items 10-12): idle is not down, a dead interface shows at
once from both ends, and a configured endpoint that differs from the one in use is said, not fought."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, ip_network

from tests.helpers import keys
from wiremesh.model.changes import UpdatePeer
from wiremesh.model.device import ObservedDevice, ObservedPeer, PeerStats
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.health import Member, mesh_health, node_status
from wiremesh.model.host import ManagedConfig, ObservedHost, OsInfo
from wiremesh.model.keys import PublicKey
from wiremesh.model.plan import roamed

NAMES = ("a", "b", "c")
KEYS = [k.public_key() for k in keys(3)]
NOW = 10_000
MEMBERS = {n: Member(n, KEYS[i], IPv4Address(f"10.0.0.{i + 1}")) for i, n in enumerate(NAMES)}


def _peer(i: int, handshake: int = 0, tx: int = 0, keepalive: int | None = None) -> ObservedPeer:
    return ObservedPeer(
        KEYS[i],
        Endpoint.parse(f"198.51.100.{11 + i}:51820"),
        (ip_network(f"10.0.0.{i + 1}/32"),),
        keepalive,
        PeerStats(handshake, 0, tx),
    )


def _host(i: int, peers: dict[int, ObservedPeer] | None = None, up: bool = True) -> ObservedHost:
    others = peers if peers is not None else {j: _peer(j) for j in range(3) if j != i}
    device = ObservedDevice(
        "wg0", KEYS[i], 51820, tuple(others.values()), (IPv4Interface(f"10.0.0.{i + 1}/24"),)
    )
    return ObservedHost(
        tools=frozenset({"wg", "wg-quick", "ip", "wireguard-go"}),
        os=OsInfo("debian"),
        kernel_module=False,
        systemd=False,
        service_enabled=False,
        now=NOW,
        public_key=KEYS[i],
        config=ManagedConfig(True, "# wiremesh: managed file\n"),
        device=device if up else None,
        link_up=up,
    )


def _health(hosts: dict[str, ObservedHost]) -> tuple[dict[tuple[str, str], str], bool]:
    everyone: dict[str, ObservedHost | None] = dict(hosts)
    nodes = [node_status(n, hosts[n], MEMBERS, everyone) for n in NAMES if hosts[n].device]
    health = mesh_health(nodes, None)
    links = {(n.name, p.name): p.link for n in health.nodes for p in n.peers}
    return links, health.healthy


def test_a_mesh_nobody_used_yet_is_idle_and_healthy() -> None:
    # Item 10: right after apply, no peer ever shook hands: idle, not down.
    links, healthy = _health({n: _host(i) for i, n in enumerate(NAMES)})
    assert set(links.values()) == {"idle"}
    assert healthy


def test_packets_sent_without_any_handshake_back_is_down() -> None:
    hosts = {n: _host(i) for i, n in enumerate(NAMES)}
    hosts["a"] = _host(0, {1: _peer(1, tx=444), 2: _peer(2, handshake=NOW - 5)})
    links, healthy = _health(hosts)
    assert links[("a", "b")] == "down" and links[("a", "c")] == "direct"
    assert not healthy


def test_keepalives_without_a_fresh_handshake_are_down() -> None:
    hosts = {n: _host(i) for i, n in enumerate(NAMES)}
    hosts["c"] = _host(2, {0: _peer(0, keepalive=25), 1: _peer(1, keepalive=25)})
    links, _ = _health(hosts)
    assert links[("c", "a")] == "down"
    assert links[("a", "c")] == "down"  # the far end's keepalives count too


def test_a_host_whose_interface_died_is_down_from_every_side_at_once() -> None:
    # Item 11: b's wireguard-go was killed a second ago; a and c still have fresh handshakes with b.
    fresh = {0: _peer(0, handshake=NOW - 1), 1: _peer(1, handshake=NOW - 1)}
    hosts = {
        "a": _host(0, {1: fresh[1], 2: _peer(2, handshake=NOW - 1)}),
        "b": _host(1, up=False),
        "c": _host(2, {0: fresh[0], 1: _peer(1, handshake=NOW - 1)}),
    }
    everyone: dict[str, ObservedHost | None] = dict(hosts)
    a = node_status("a", hosts["a"], MEMBERS, everyone)
    link = {p.name: p for p in a.peers}
    assert link["b"].link == "down" and link["b"].reason == "b's interface is down"
    assert link["c"].link == "direct"


def test_an_endpoint_in_use_that_differs_from_the_configured_one_is_told() -> None:
    # Item 12: the file says b is at port 51821 (wrong), b answers from 51820, the link works.
    wrong = Endpoint.parse("198.51.100.12:51821")
    seen = _host(0, {1: _peer(1, handshake=NOW - 3), 2: _peer(2, handshake=NOW - 3)})
    seen = replace(seen, config=ManagedConfig(True, "x", {KEYS[1]: wrong}))
    status = node_status("a", seen, MEMBERS, {"a": seen}, seen.config.endpoints)  # type: ignore[union-attr]
    b = {p.name: p for p in status.peers}["b"]
    assert b.link == "direct" and b.endpoint_mismatch
    assert b.note is not None and "198.51.100.12:51821" in b.note and "which works" in b.note
    # plan: setting 51821 again would only break the link until b's next packet: a note instead
    change = UpdatePeer(
        "b", "endpoint", "198.51.100.12:51820", str(wrong), public_key=KEYS[1], endpoint=wrong
    )
    note = roamed(change, seen)
    assert note is not None and note.startswith("peer b: its configured endpoint")
    # an inventory change (the file says something else) is still a change
    other = replace(seen, config=ManagedConfig(True, "x", {KEYS[1]: Endpoint.parse("192.0.2.9:1")}))
    assert roamed(change, other) is None
    # and a stale session is no proof that the endpoint in use works
    stale = replace(seen, now=NOW + 1000)
    assert roamed(change, stale) is None


def test_keys_are_public_keys() -> None:
    assert all(isinstance(k, PublicKey) for k in KEYS)
