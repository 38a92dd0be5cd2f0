"""The pure planner: wanted vs observed, field by field."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

from tests.helpers import simple_inventory
from wiremesh.codec.wgquick import KeyFile, render
from wiremesh.model.device import ObservedDevice, ObservedPeer, PeerStats
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.host import ManagedConfig, ObservedHost, OsInfo, Route, WantedHost, extra_routes
from wiremesh.model.keys import PublicKey
from wiremesh.model.plan import (
    AddPeer,
    BringUp,
    CreateKey,
    EnableService,
    LinkUp,
    RemovePeer,
    SetAddress,
    SetListenPort,
    SetMtu,
    SetRoute,
    UpdatePeer,
    WriteConfig,
    plan_host,
)
from wiremesh.model.topology import wanted_device

CONF = "/etc/wireguard/wg0.conf"
K0 = simple_inventory(1)[0].nodes[0].public_key or PublicKey("")


def _wanted(n: int = 3, extra: bool = False) -> tuple[WantedHost, dict[PublicKey, str]]:
    inventory, _ = simple_inventory(n)
    if extra:
        node = replace(inventory.nodes[1], allowed_ips=(IPv4Network("172.16.1.0/24"),))
        inventory = inventory.with_node(node)
    device = wanted_device(inventory, inventory.nodes[0])
    text = render(device, KeyFile("/etc/wireguard/wg0.key"))
    names = {n.public_key: str(n.name) for n in inventory if n.public_key is not None}
    return WantedHost(device, text, extra_routes(device)), names


def _running(wanted: WantedHost) -> ObservedHost:
    """A host that runs exactly the wanted device."""
    assert all(p.public_key is not None for p in wanted.device.peers)
    peers = tuple(
        ObservedPeer(
            p.public_key or K0,
            p.endpoint,
            p.allowed_ips,
            p.persistent_keepalive,
            PeerStats(0, 0, 0),
        )
        for p in wanted.device.peers
    )
    device = ObservedDevice(
        "wg0",
        None,
        wanted.device.interface.listen_port,
        peers,
        wanted.device.interface.addresses,
        wanted.device.interface.mtu,
    )
    return ObservedHost(
        tools=frozenset({"wg", "wg-quick", "ip", "wireguard-go"}),
        os=OsInfo("debian"),
        kernel_module=False,
        systemd=False,
        service_enabled=False,
        now=1000,
        public_key=None,
        config=ManagedConfig(True, wanted.config_text),
        device=device,
        link_up=True,
        routes=tuple(Route(r, "boot") for r in wanted.routes),
    )


def test_up_to_date_host_has_an_empty_plan() -> None:
    wanted, names = _wanted(extra=True)
    observed = replace(_running(wanted), public_key=K0)
    plan = plan_host("n0", wanted, observed, CONF, names)
    assert plan.empty, [c.describe() for c in plan.changes]


def test_new_host_gets_key_config_bring_up() -> None:
    wanted, names = _wanted()
    observed = replace(
        _running(wanted), config=None, device=None, link_up=False, systemd=True, key_file=False
    )
    plan = plan_host("n0", wanted, observed, CONF, names)
    assert [type(c) for c in plan.changes] == [CreateKey, WriteConfig, BringUp, EnableService]
    assert plan.changes[2].describe() == "bring up wg0 with 2 peer(s) (wg-quick up)"


def test_peer_differences_are_per_peer() -> None:
    wanted, names = _wanted(4)
    running = _running(wanted)
    assert running.device is not None
    peers = list(running.device.peers)
    moved = replace(peers[0], endpoint=Endpoint(IPv4Address("192.0.2.9"), 51820))
    stale = replace(peers[1], public_key=simple_inventory(5)[0].nodes[4].public_key or K0)
    observed = replace(
        running,
        public_key=simple_inventory(1)[0].nodes[0].public_key,
        device=replace(running.device, peers=(moved, stale, peers[2])),
        config=ManagedConfig(True, "old text"),
    )
    names[stale.public_key] = "n4"
    plan = plan_host("n0", wanted, observed, CONF, names)
    described = [c.describe() for c in plan.changes]
    assert described == [
        "write /etc/wireguard/wg0.conf (changed)",
        "endpoint of n1: 192.0.2.9:51820 → 198.51.100.11:51820",
        "add peer n2 at 198.51.100.12:51820",
        "remove peer n4",
    ]
    assert [type(c) for c in plan.changes] == [WriteConfig, UpdatePeer, AddPeer, RemovePeer]


def test_interface_settings_routes_and_link() -> None:
    wanted, names = _wanted(3, extra=True)
    running = _running(wanted)
    assert running.device is not None
    observed = replace(
        running,
        public_key=simple_inventory(1)[0].nodes[0].public_key,
        link_up=False,
        device=replace(
            running.device,
            addresses=(IPv4Interface("10.0.0.1/16"), IPv4Interface("10.9.9.9/24")),
            mtu=1500,
            listen_port=51000,
        ),
        routes=(
            Route(IPv4Network("172.31.0.0/16"), "boot"),
            Route(IPv4Network("10.0.0.0/16"), "kernel"),
        ),
    )
    plan = plan_host("n0", wanted, observed, CONF, names)
    kinds = [type(c) for c in plan.changes]
    assert kinds == [LinkUp, SetAddress, SetListenPort, SetMtu, SetRoute, SetRoute]
    assert [c.describe() for c in plan.changes[1:]] == [
        "remove address 10.9.9.9/24",
        "listen port 51000 → 51820",
        "MTU 1500 → 1420",
        "add route 172.16.1.0/24",
        "remove route 172.31.0.0/16",
    ]


def test_unknown_config_is_replaced_and_key_adopted() -> None:
    wanted, names = _wanted()
    observed = replace(
        _running(wanted), config=ManagedConfig(False, None), device=None, key_file=False
    )
    plan = plan_host("n0", wanted, observed, CONF, names)
    assert isinstance(plan.changes[0], CreateKey) and plan.changes[0].adopt_from_config
    assert "not made by wiremesh" in plan.changes[1].describe()


def test_a_lost_key_file_is_seen_and_recovered_from_the_running_interface() -> None:
    # Issue 10 item 5: wg0.key and wg0.conf deleted while the interface runs.
    wanted, names = _wanted()
    running = _running(wanted)
    assert running.device is not None
    device = replace(running.device, public_key=K0)
    observed = replace(running, device=device, config=None, key_file=False, public_key=K0)
    plan = plan_host("n0", wanted, observed, CONF, names)
    assert isinstance(plan.changes[0], CreateKey) and plan.changes[0].source == "interface"
    assert plan.changes[0].describe().startswith("recover the key file from the running interface")
    assert [type(c) for c in plan.changes[1:]] == [WriteConfig]
    # no interface, no config, but the inventory knew the key: a new one, and the plan says so
    gone = replace(observed, device=None, link_up=False)
    first = plan_host("n0", wanted, gone, CONF, names).changes[0]
    assert isinstance(first, CreateKey) and first.source == "new" and first.lost
    assert "every peer gets the new one" in first.describe()


def test_an_interface_of_another_mesh_is_a_conflict() -> None:
    # Issue 10 item 4: the managed file's marker names the mesh that owns the interface.
    wanted, names = _wanted()
    text = wanted.config_text.replace("managed file", "managed file: node n0 of mesh mine", 1)
    observed = replace(_running(wanted), public_key=K0, config=ManagedConfig(True, text))
    assert ManagedConfig(True, text).mesh == "mine"
    plan = plan_host("n0", replace(wanted, mesh="other"), observed, CONF, names)
    assert plan.conflicts[0].startswith(f"{CONF} belongs to mesh 'mine', not 'other'")
    same = plan_host("n0", replace(wanted, mesh="mine"), observed, CONF, names)
    assert not same.conflicts


def test_dns_endpoints_match_their_resolved_addresses() -> None:
    from wiremesh.model.plan import same_endpoint

    wanted = Endpoint("vpn.example.com", 51820)
    seen = Endpoint(IPv4Address("203.0.113.5"), 51820)
    resolved = {"vpn.example.com": frozenset({IPv4Address("203.0.113.5")})}
    assert same_endpoint(wanted, seen, resolved)
    assert not same_endpoint(wanted, Endpoint(IPv4Address("203.0.113.6"), 51820), resolved)
    assert same_endpoint(wanted, seen, {})  # unresolvable here: the host's resolution is trusted
    assert not same_endpoint(wanted, Endpoint(IPv4Address("203.0.113.5"), 1), {})
