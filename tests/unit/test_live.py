"""Live steps: the plan's peer changes as ``wg set`` calls, checked against a model of WireGuard.

:class:`Wg` models how the kernel module and wireguard-go carry out ``wg set``: each prefix has at
most one owning peer; inserting a prefix that another peer owns moves it in place; "replace allowed
IPs" (any ``allowed-ips`` value without ``+``) first removes every prefix of the peer, then inserts
the new ones one by one; removing a peer removes its prefixes. Every single trie operation is a
moment a packet can see, and the property tests check every moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network, ip_network

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import keys
from wiremesh.model.addressing import IPNetwork
from wiremesh.model.changes import (
    AddPeer,
    Change,
    RemovePeer,
    SetAddress,
    SetListenPort,
    SetMtu,
    SetRoute,
    UpdatePeer,
)
from wiremesh.model.device import ObservedDevice, ObservedPeer, PeerStats, WantedDevice, WantedPeer
from wiremesh.model.device import WantedInterface as Iface
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.keys import PublicKey
from wiremesh.model.live import WgStep, live_steps, switch_together, wg_steps
from wiremesh.model.names import NodeName
from wiremesh.model.plan import diff_peers

KEYS = [k.public_key() for k in keys(7)]
SPARE = KEYS[6]
POOL = [ip_network(f"10.0.0.{i}/32") for i in range(1, 7)] + [
    ip_network("172.16.1.0/24"),
    ip_network("172.16.2.0/24"),
    ip_network("fd00::1/128"),
]


@dataclass
class Peer:
    endpoint: str | None = None
    keepalive: int = 0
    psk: bool = False


@dataclass
class Wg:
    """A model of one WireGuard device, recording every intermediate moment of the trie."""

    peers: dict[str, Peer] = field(default_factory=dict)
    owner: dict[IPNetwork, str] = field(default_factory=dict)
    listen_port: int = 51820
    moments: list[dict[IPNetwork, str]] = field(default_factory=list)

    def snapshot(self) -> None:
        self.moments.append(dict(self.owner))

    def remove_prefixes(self, key: str) -> None:
        for net in [n for n, k in self.owner.items() if k == key]:
            del self.owner[net]
        self.snapshot()  # the kernel unlinks them all before any insert (remove_by_peer)

    def insert(self, key: str, net: IPNetwork) -> None:
        self.owner[net] = key  # moves it from another peer in place
        self.snapshot()

    def run(self, step: WgStep) -> None:
        args = list(step.args)
        key: str | None = None
        while args:
            word = args.pop(0)
            if word == "listen-port":
                self.listen_port = int(args.pop(0))
            elif word == "private-key":
                args.pop(0)
            elif word == "peer":
                key = args.pop(0)
                self.peers.setdefault(key, Peer())
            elif key is None:
                raise AssertionError(f"{word} before any peer in {step}")
            elif word == "remove":
                self.remove_prefixes(key)
                del self.peers[key]
                key = None
            elif word == "endpoint":
                self.peers[key].endpoint = args.pop(0)
            elif word == "persistent-keepalive":
                value = args.pop(0)
                self.peers[key].keepalive = 0 if value == "off" else int(value)
            elif word == "preshared-key":
                assert args.pop(0) == "/dev/null"
                self.peers[key].psk = False
            elif word == "allowed-ips":
                items = [i for i in args.pop(0).split(",") if i]
                if not all(i.startswith("+") for i in items):
                    assert not any(i.startswith(("+", "-")) for i in items), step
                    self.remove_prefixes(key)
                for item in items:
                    self.insert(key, ip_network(item.lstrip("+")))
            else:
                raise AssertionError(f"unknown word {word} in {step}")


def _observed(spec: dict[int, tuple[list[IPNetwork], str | None, int]]) -> ObservedDevice:
    peers = tuple(
        ObservedPeer(
            KEYS[i],
            Endpoint.parse(ep) if ep else None,
            tuple(nets),
            keepalive or None,
            PeerStats(0, 0, 0),
        )
        for i, (nets, ep, keepalive) in spec.items()
    )
    return ObservedDevice("wg0", None, 51820, peers)


def _wanted(spec: dict[int, tuple[list[IPNetwork], str | None, int]]) -> WantedDevice:
    peers = tuple(
        WantedPeer(
            NodeName(f"n{i}"),
            KEYS[i],
            Endpoint.parse(ep) if ep else None,
            tuple(nets),
            keepalive or None,
        )
        for i, (nets, ep, keepalive) in spec.items()
    )
    return WantedDevice(NodeName("me"), Iface("wg0", (), 51820, None), peers)


def _model(device: ObservedDevice) -> Wg:
    wg = Wg()
    for peer in device.peers:
        key = str(peer.public_key)
        wg.peers[key] = Peer(
            str(peer.endpoint) if peer.endpoint else None, peer.persistent_keepalive or 0
        )
        for net in peer.allowed_ips:
            wg.owner[net] = key
    wg.snapshot()
    return wg


Spec = dict[int, tuple[list[IPNetwork], str | None, int]]


@st.composite
def devices(draw: st.DrawFn) -> Spec:
    """Peers 0-5 (some absent) owning disjoint prefixes from a small pool."""
    present = draw(st.lists(st.integers(0, 5), unique=True, max_size=6))
    owners = draw(
        st.lists(st.sampled_from([None, *present]), min_size=len(POOL), max_size=len(POOL))
    )
    spec: Spec = {}
    for i in present:
        nets = [n for n, o in zip(POOL, owners, strict=True) if o == i]
        endpoint = draw(st.sampled_from([None, "198.51.100.11:51820", "198.51.100.12:51821"]))
        spec[i] = (nets, endpoint, draw(st.sampled_from([0, 25])))
    return spec


def _plan(before: Spec, after: Spec) -> list[Change]:
    names = {KEYS[i]: f"n{i}" for i in range(6)}
    return diff_peers(_wanted(after), _observed(before), names)


def _check(before: Spec, after: Spec, incremental: bool) -> None:
    observed = _observed(before)
    changes = _plan(before, after)
    wg = _model(observed)
    for step in wg_steps(changes, incremental, SPARE):
        wg.run(step)
    # 1. The end state is the wanted one (endpoints only where a fixed one is wanted).
    want_owner = {n: str(KEYS[i]) for i, (nets, _, _) in after.items() for n in nets}
    assert wg.owner == want_owner
    assert set(wg.peers) == {str(KEYS[i]) for i in after}
    for i, (_, endpoint, keepalive) in after.items():
        peer = wg.peers[str(KEYS[i])]
        assert peer.keepalive == keepalive
        if endpoint is not None:
            assert peer.endpoint == endpoint
    # 2. No moment where a prefix that is wanted and routed before has no owner, or an owner that
    #    is neither its old nor its new one. Older wg(8) can only replace a peer's whole list, so
    #    there a peer that gains prefixes may lose its own for a moment: only that peer.
    had = {n: str(KEYS[i]) for i, (nets, _, _) in before.items() for n in nets}
    replaced = set()
    if not incremental:
        for change in changes:
            if (
                isinstance(change, UpdatePeer)
                and change.setting == "allowed IPs"
                and set(change.allowed_ips) - set(change.old_allowed_ips)
            ):
                replaced.add(str(change.public_key))
    for net, new_owner in want_owner.items():
        old_owner = had.get(net)
        if old_owner is None:
            continue
        for moment in wg.moments:
            now = moment.get(net)
            if now is None and (old_owner in replaced or new_owner in replaced):
                continue
            assert now in (old_owner, new_owner), (net, old_owner, new_owner, moment)
    # 3. Peers that the plan does not name are never touched by any step.
    touched = {str(c.public_key) for c in changes if hasattr(c, "public_key")}
    for step in wg_steps(changes, incremental, SPARE):
        for i, word in enumerate(step.args):
            if word == "peer":
                assert step.args[i + 1] in touched | {str(SPARE)}, step


@settings(max_examples=3000, deadline=None)
@given(devices(), devices(), st.booleans())
def test_live_steps_reach_the_wanted_state_and_never_drop_a_kept_route(
    before: Spec, after: Spec, incremental: bool
) -> None:
    _check(before, after, incremental)


def _net(text: str) -> IPNetwork:
    return ip_network(text)


def test_relay_to_direct_moves_the_route_before_anything_else() -> None:
    # lab4 (peer 4) reached lab5's address through the relay (peer 1); now directly.
    relay_own, five = _net("10.0.0.1/32"), _net("10.0.0.5/32")
    before: Spec = {1: ([relay_own, five], "198.51.100.11:51820", 0), 5: ([], None, 25)}
    after: Spec = {1: ([relay_own], "198.51.100.11:51820", 0), 5: ([five], None, 25)}
    steps = wg_steps(_plan(before, after), incremental=False, spare=SPARE)
    # One step: inserting lab5's /32 into its own peer moves it off the relay; the relay's entry
    # is never rewritten (that would remove the relay's own /32 for a moment).
    assert [s.args for s in steps] == [("peer", str(KEYS[5]), "allowed-ips", "10.0.0.5/32")]
    _check(before, after, incremental=False)


def test_direct_to_relay_appends_to_the_relay_where_wg_can() -> None:
    relay_own, five = _net("10.0.0.1/32"), _net("10.0.0.5/32")
    before: Spec = {1: ([relay_own], "198.51.100.11:51820", 0), 5: ([five], None, 25)}
    after: Spec = {1: ([relay_own, five], "198.51.100.11:51820", 0), 5: ([], None, 25)}
    steps = wg_steps(_plan(before, after), incremental=True, spare=SPARE)
    assert [s.args for s in steps] == [("peer", str(KEYS[1]), "allowed-ips", "+10.0.0.5/32")]
    old = wg_steps(_plan(before, after), incremental=False, spare=SPARE)
    assert [s.args for s in old] == [
        ("peer", str(KEYS[1]), "allowed-ips", "10.0.0.1/32,10.0.0.5/32")
    ]


def test_a_prefix_that_leaves_goes_through_a_spare_peer_and_the_rest_stay() -> None:
    own, subnet = _net("10.0.0.3/32"), _net("172.16.1.0/24")
    before: Spec = {3: ([own, subnet], "198.51.100.13:51820", 0)}
    after: Spec = {3: ([own], "198.51.100.13:51820", 0)}
    steps = wg_steps(_plan(before, after), incremental=False, spare=SPARE)
    spare = str(SPARE)
    assert [s.args for s in steps] == [
        ("peer", spare, "allowed-ips", "172.16.1.0/24", "peer", spare, "remove")
    ]
    _check(before, after, incremental=False)


def test_endpoint_and_keepalive_changes_never_touch_allowed_ips() -> None:
    before: Spec = {2: ([_net("10.0.0.2/32")], "198.51.100.12:51820", 0)}
    after: Spec = {2: ([_net("10.0.0.2/32")], "198.51.100.99:51820", 25)}
    steps = wg_steps(_plan(before, after), incremental=False, spare=SPARE)
    assert [s.args for s in steps] == [
        ("peer", str(KEYS[2]), "endpoint", "198.51.100.99:51820"),
        ("peer", str(KEYS[2]), "persistent-keepalive", "25"),
    ]


def test_new_peers_come_before_removed_ones_and_the_port_first() -> None:
    changes: list[Change] = [
        RemovePeer("old", KEYS[0]),
        AddPeer("new", None, (_net("10.0.0.9/32"),), public_key=KEYS[1], keepalive=25),
        SetListenPort(51820, 51821),
    ]
    steps = wg_steps(changes, incremental=False, spare=SPARE)
    assert [s.args for s in steps] == [
        ("listen-port", "51821"),
        ("peer", str(KEYS[1]), "persistent-keepalive", "25", "allowed-ips", "10.0.0.9/32"),
        ("peer", str(KEYS[0]), "remove"),
    ]


def test_a_preshared_key_set_by_hand_is_cleared() -> None:
    observed = ObservedDevice(
        "wg0",
        None,
        51820,
        (
            ObservedPeer(
                KEYS[2], None, (_net("10.0.0.2/32"),), None, PeerStats(0, 0, 0), preshared_key=True
            ),
        ),
    )
    changes = diff_peers(_wanted({2: ([_net("10.0.0.2/32")], None, 0)}), observed, {})
    assert [c.describe() for c in changes] == ["preshared key of n2: set → none"]
    steps = wg_steps(changes, incremental=False, spare=SPARE)
    assert [s.args for s in steps] == [("peer", str(KEYS[2]), "preshared-key", "/dev/null")]


def test_ip_steps_order_and_undo() -> None:
    new = IPv4Network("10.0.1.0/24")
    from ipaddress import IPv4Interface

    changes: list[Change] = [
        SetAddress(IPv4Interface("10.0.0.1/24"), True),
        SetAddress(IPv4Interface("10.9.0.1/24"), False),
        SetRoute(new, True),
        SetMtu(1420, 1400),
    ]
    live = live_steps(changes, "wg0", False, SPARE)
    assert [s.args for s in live.before] == [("-4", "address", "add", "10.0.0.1/24", "dev", "wg0")]
    assert [s.args for s in live.after] == [
        ("-4", "route", "replace", "10.0.1.0/24", "dev", "wg0"),
        ("-4", "address", "del", "10.9.0.1/24", "dev", "wg0"),
        ("link", "set", "dev", "wg0", "mtu", "1400"),
    ]
    assert [s.undo for s in live.after] == [
        ("-4", "route", "del", "10.0.1.0/24", "dev", "wg0"),
        ("-4", "address", "add", "10.9.0.1/24", "dev", "wg0"),
        ("link", "set", "dev", "wg0", "mtu", "1420"),
    ]
    assert live.wg == ()


def test_unchanged_peers_give_no_steps() -> None:
    spec: Spec = {1: ([_net("10.0.0.1/32")], "198.51.100.11:51820", 0), 2: ([], None, 25)}
    assert _plan(spec, spec) == []
    assert wg_steps([], incremental=False, spare=SPARE) == ()


def test_keys_are_typed() -> None:
    assert all(isinstance(k, PublicKey) for k in KEYS)


def test_a_nat_pair_move_is_one_atomic_step_per_host_and_no_order_does_better() -> None:
    """Why a NAT pair's move between relay and direct path is carried out as it is.

    On each end the move is one insert into the other end's own peer entry: it takes the prefix off
    the relay's entry in place, so that end never has a moment without a route. But WireGuard checks
    a packet's source against the peer it came from, with the same table it routes with: a packet
    crossing between the two ends' moves arrives over a path its receiver no longer (or not yet)
    accepts. Every order of the two hosts' moves has such a moment; only doing both at once
    (``switch_together``, one agreed instant) shrinks it to the packets in flight at that instant.
    """
    relay_own, five, four = _net("10.0.0.1/32"), _net("10.0.0.5/32"), _net("10.0.0.4/32")
    on_four_before: Spec = {1: ([relay_own, five], "198.51.100.11:51820", 0), 5: ([], None, 25)}
    on_four_after: Spec = {1: ([relay_own], "198.51.100.11:51820", 0), 5: ([five], None, 25)}
    on_five_before: Spec = {1: ([relay_own, four], "198.51.100.11:51820", 0), 4: ([], None, 25)}
    on_five_after: Spec = {1: ([relay_own], "198.51.100.11:51820", 0), 4: ([four], None, 25)}
    for before, after, moving in (
        (on_four_before, on_four_after, five),
        (on_five_before, on_five_after, four),
    ):
        for incremental in (False, True):
            changes = _plan(before, after)
            steps = wg_steps(changes, incremental, SPARE)
            touching = [s for s in steps if any(str(moving) in a for a in s.args)]
            assert len(touching) == 1  # one atomic insert per end
            wg = _model(_observed(before))
            for step in steps:
                wg.run(step)
            assert all(moving in m for m in wg.moments)  # routed at every moment
    # Packets cross between the ends: which orders of the two moves leave a moment where the ends
    # disagree (a packet sent over one path is received by an end that accepts only the other)?
    disagree = []
    for order in (("lab4", "lab5"), ("lab5", "lab4")):
        state = {"lab4": "relay", "lab5": "relay"}
        moments = [dict(state)]
        for end in order:
            state[end] = "direct"
            moments.append(dict(state))
        disagree.append(any(m["lab4"] != m["lab5"] for m in moments))
    assert disagree == [True, True]  # no order avoids it: hence one agreed instant for both
    # Both ends wait for the instant, also when only one end's plan moves (the other may follow in
    # the next round); hosts of other pairs do not.
    move = UpdatePeer("lab4", "allowed IPs", "", "", public_key=KEYS[4], allowed_ips=(four,))
    plans: dict[str, list[Change]] = {"lab4": [], "lab5": [move], "lab2": [], "lab3": []}
    assert switch_together(plans, [("lab4", "lab5"), ("lab2", "lab3")]) == {"lab4", "lab5"}
    assert switch_together({"lab2": [], "lab3": []}, [("lab2", "lab3")]) == frozenset()
