"""Mesh health from observations (pure): per-node status, links, the ping matrix, ``healthy``.

A link is directed. A→B is *direct* when A routes B's address to B's own peer entry and that entry
had a handshake in the last :data:`HANDSHAKE_FRESH_S` seconds; *relayed* when A routes B's address to
a relay R, A has a fresh handshake with R and R with B. WireGuard renews sessions every 2 minutes
while traffic flows (REKEY_AFTER_TIME = 120 s), so 180 s means "a session is live".

Without a fresh handshake a link is *idle* when nothing says it is broken: WireGuard only shakes
hands when there is traffic, so a link nobody used since the interface came up (or for a while)
looks just like that. It is *down* when something does say so: the interface is down at either end
(read from both hosts, so a host whose interface died shows at once, not after 180 s), no peer
routes the address, keepalives are configured (they keep a working session fresh) and still no
handshake, packets were sent but no handshake ever came back, or (with pings) every ping got lost.
A mesh is healthy with idle links; ``status --ping`` sends traffic first and turns idle links
into direct or relayed ones, or down ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from wiremesh.model.addressing import IPNetwork
from wiremesh.model.device import ObservedDevice, ObservedPeer
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.host import ObservedHost
from wiremesh.model.keys import PublicKey

HANDSHAKE_FRESH_S = 180


@dataclass(frozen=True)
class PeerStatus:
    """One peer (and the link toward it) as one node sees it."""

    name: str
    public_key: PublicKey | None
    configured: bool
    endpoint: Endpoint | None
    latest_handshake_age_s: float | None
    rx_bytes: int
    tx_bytes: int
    link: str = "down"  # "direct", "relayed", "idle" or "down"
    via: str | None = None  # the relay, when the route goes through one
    reason: str | None = None  # why the link is down (or idle)
    configured_endpoint: Endpoint | None = None  # what the host's config file says
    allowed_ips: tuple[IPNetwork, ...] = ()  # of this peer entry on the host, as wg shows them
    latest_handshake: int = 0  # seconds since the epoch on the host's clock; 0: never

    @property
    def up(self) -> bool:
        """The link works (direct or relayed)."""
        return self.link in ("direct", "relayed")

    @property
    def endpoint_mismatch(self) -> bool:
        """The endpoint in use is not the configured one (WireGuard roamed to where the peer's packets
        come from: the configured one may be wrong, e.g. a wrong port)."""
        configured = self.configured_endpoint
        return (
            configured is not None
            and configured.is_ip
            and self.endpoint is not None
            and self.endpoint != configured
        )

    @property
    def note(self) -> str | None:
        """What a person should know about a link that works: a configured endpoint that differs
        from the one in use."""
        if not self.endpoint_mismatch:
            return None
        works = " (which works)" if self.up else ""
        return (
            f"the configured endpoint {self.configured_endpoint} is not the one in use, "
            f"{self.endpoint}{works}: check {self.name}'s endpoint and listen port"
        )


@dataclass(frozen=True)
class NodeStatus:
    """One node's host: reachable, interface, peers."""

    name: str
    reachable: bool
    error: str | None = None
    interface_up: bool = False
    listen_port: int | None = None
    mtu: int | None = None
    backend: str | None = None
    peers: tuple[PeerStatus, ...] = ()


@dataclass(frozen=True)
class PingResult:
    """Pings from one node to another's overlay address."""

    source: str
    target: str
    address: str
    transmitted: int
    received: int
    rtt_ms: float | None

    @property
    def loss(self) -> float:
        """Fraction of pings lost (1.0 when none could be sent)."""
        if self.transmitted <= 0:
            return 1.0
        return round(1 - self.received / self.transmitted, 3)


@dataclass(frozen=True)
class MeshHealth:
    """The whole mesh."""

    nodes: tuple[NodeStatus, ...]
    links_expected: int
    links_up: int
    ping: tuple[PingResult, ...] | None = None

    def count(self, link: str) -> int:
        """Links that are "direct", "relayed", "idle" or "down" (unreachable nodes' links are
        down)."""
        seen = sum(1 for n in self.nodes for p in n.peers if p.link == link)
        if link == "down":
            seen += self.links_expected - sum(len(n.peers) for n in self.nodes)
        return seen

    @property
    def healthy(self) -> bool:
        """Every node reachable with its interface up, no link down (idle ones are fine), and (with
        pings) every pair answering."""
        if not all(n.reachable and n.interface_up for n in self.nodes):
            return False
        if self.count("down"):
            return False
        return self.ping is None or all(p.received > 0 for p in self.ping)


@dataclass(frozen=True)
class Member:
    """What status needs to know of one node: its name, key and overlay address."""

    name: str
    key: PublicKey | None
    address: IPv4Address


def _fresh(peer: ObservedPeer | None, now: int) -> bool:
    if peer is None:
        return False
    age = peer.stats.handshake_age(now)
    return age is not None and age <= HANDSHAKE_FRESH_S


def _carrier(device: ObservedDevice, address: IPv4Address) -> ObservedPeer | None:
    """The peer whose AllowedIPs route ``address`` (the longest prefix wins, as in WireGuard)."""
    best: ObservedPeer | None = None
    best_len = -1
    for peer in device.peers:
        for net in peer.allowed_ips:
            if net.version == 4 and address in net and net.prefixlen > best_len:
                best, best_len = peer, net.prefixlen
    return best


def _quiet(
    entry: ObservedPeer, seen: ObservedHost, name: str, far: ObservedPeer | None
) -> tuple[str, str]:
    """(idle or down, reason) for a peer entry without a fresh handshake; ``far`` is the other end's
    entry for us, if that host was read."""
    keepalive = entry.persistent_keepalive or (far.persistent_keepalive if far else None)
    if keepalive:
        return "down", (
            f"keepalives every {keepalive} s, but no handshake with {name} in the last "
            f"{HANDSHAKE_FRESH_S} s"
        )
    stats = entry.stats
    if stats.latest_handshake <= 0 and stats.tx_bytes > 0:
        return "down", f"sent {stats.tx_bytes} bytes to {name}, but no handshake ever came back"
    age = stats.handshake_age(seen.now)
    if age is None:
        return "idle", f"no traffic with {name} yet (the first packet starts the session)"
    return "idle", f"no traffic with {name} in the last {age:.0f} s"


def _interface_down(host: ObservedHost | None) -> bool:
    return host is not None and (host.device is None or not host.link_up)


def _link(
    seen: ObservedHost,
    target: Member,
    names: Mapping[PublicKey, str],
    everyone: Mapping[str, ObservedHost | None],
    members: Mapping[str, Member],
    own_key: PublicKey | None = None,
) -> tuple[str, str | None, str | None]:
    """(link, via, reason) for the link from the host ``seen`` to ``target``."""
    device = seen.device
    if device is None or not seen.link_up:
        return "down", None, "the interface is down"
    if _interface_down(everyone.get(target.name)):
        return "down", None, f"{target.name}'s interface is down"
    carrier = _carrier(device, target.address)
    if carrier is None:
        return "down", None, f"no peer routes {target.address} (run 'wiremesh apply')"
    target_seen = everyone.get(target.name)
    if carrier.public_key == target.key:
        if _fresh(carrier, seen.now):
            return "direct", None, None
        far = None
        if target_seen is not None and target_seen.device is not None and own_key is not None:
            far = target_seen.device.peer(own_key)
        link, reason = _quiet(carrier, seen, target.name, far)
        return link, None, reason
    relay = names.get(carrier.public_key, "an unknown peer")
    relay_seen = everyone.get(relay)
    if relay_seen is None and relay in members:
        return "down", relay, f"relayed via {relay}, which could not be read"
    if relay_seen is not None and (relay_seen.device is None or not relay_seen.link_up):
        return "down", relay, f"relayed via {relay}, whose interface is down"
    if not _fresh(carrier, seen.now):
        far = None
        if relay_seen is not None and relay_seen.device is not None and own_key is not None:
            far = relay_seen.device.peer(own_key)
        link, reason = _quiet(carrier, seen, relay, far)
        return link, relay, f"relayed via {relay}: {reason}"
    member = members.get(target.name)
    onward = None
    if relay_seen is not None and relay_seen.device is not None and member and member.key:
        onward = relay_seen.device.peer(member.key)
    if onward is None:
        return "down", relay, f"relayed via {relay}, which has no peer {target.name}"
    if not _fresh(onward, relay_seen.now if relay_seen else seen.now):
        far = None
        relay_key = members[relay].key if relay in members else None
        if target_seen is not None and target_seen.device is not None and relay_key is not None:
            far = target_seen.device.peer(relay_key)
        link, reason = _quiet(onward, relay_seen or seen, target.name, far)
        return link, relay, f"relayed via {relay}: {reason}"
    return "relayed", relay, None


def node_status(
    name: str,
    seen: ObservedHost,
    members: Mapping[str, Member],
    everyone: Mapping[str, ObservedHost | None] | None = None,
    configured: Mapping[PublicKey, Endpoint] | None = None,
) -> NodeStatus:
    """The status of one reachable node and of its links to the other members. ``configured``: the
    endpoints its config file gives its peers (to tell a roamed endpoint from the configured one)."""
    device = seen.device
    if device is None:
        return NodeStatus(name, True, backend=seen.backend)
    names = {m.key: m.name for m in members.values() if m.key is not None}
    own = members[name].key if name in members else None
    out: list[PeerStatus] = []
    for member in members.values():
        if member.name == name:
            continue
        current = device.peer(member.key) if member.key is not None else None
        link, via, reason = _link(seen, member, names, everyone or {}, members, own)
        if current is None:
            out.append(
                PeerStatus(member.name, member.key, False, None, None, 0, 0, link, via, reason)
            )
            continue
        stats = current.stats
        out.append(
            PeerStatus(
                member.name,
                member.key,
                True,
                current.endpoint,
                stats.handshake_age(seen.now),
                stats.rx_bytes,
                stats.tx_bytes,
                link,
                via,
                reason,
                (configured or {}).get(current.public_key),
                current.allowed_ips,
                stats.latest_handshake,
            )
        )
    return NodeStatus(
        name,
        True,
        interface_up=seen.link_up,
        listen_port=device.listen_port,
        mtu=device.mtu,
        backend=seen.backend,
        peers=tuple(out),
    )


def with_pings(node: NodeStatus, pings: list[PingResult]) -> NodeStatus:
    """Mark links down whose every ping (to every address of the target) got lost."""
    lost = {
        p.target
        for p in pings
        if p.source == node.name
        and all(q.received == 0 for q in pings if q.source == node.name and q.target == p.target)
    }
    if not lost:
        return node
    peers = tuple(
        replace(
            p,
            link="down",
            reason="pings got no answer" if p.link in ("direct", "relayed", "idle") else p.reason,
        )
        if p.name in lost
        else p
        for p in node.peers
    )
    return replace(node, peers=peers)


def mesh_health(
    nodes: list[NodeStatus], ping: list[PingResult] | None, peers_each: int | None = None
) -> MeshHealth:
    """Links expected (from each node to each of its ``peers_each`` peers: by default every other
    node of ``nodes``; ``status NODE`` shows some nodes of a larger mesh) and up."""
    if ping is not None:
        nodes = [with_pings(n, ping) for n in nodes]
    count = len(nodes)
    expected = count * (count - 1 if peers_each is None else peers_each)
    up = sum(1 for n in nodes for p in n.peers if p.up)
    return MeshHealth(tuple(nodes), expected, up, tuple(ping) if ping is not None else None)


def parse_ping(source: str, names: Mapping[str, str], text: str) -> list[PingResult]:
    """Parse the ping script's ``address transmitted received avg`` lines."""
    out = []
    for line in text.splitlines():
        words = line.split()
        if len(words) != 4 or words[0] not in names:
            continue
        rtt = None if words[3] == "-" else float(words[3])
        out.append(PingResult(source, names[words[0]], words[0], int(words[1]), int(words[2]), rtt))
    return out


def link_states(health: MeshHealth) -> dict[tuple[str, str], str]:
    """Every directed link's state by (node, peer); a node that could not be read has its links
    down (as :meth:`MeshHealth.count` counts them)."""
    names = [n.name for n in health.nodes]
    out: dict[tuple[str, str], str] = {}
    for node in health.nodes:
        seen = {p.name: p.link for p in node.peers}
        for name in names:
            if name != node.name:
                out[(node.name, name)] = seen.get(name, "down")
    return out


def changed_links(before: MeshHealth, after: MeshHealth) -> dict[tuple[str, str], str]:
    """The links whose state changed from ``before`` to ``after``: (node, peer) -> the state they
    had before (links that are new since, a node added, count as changed from "new")."""
    old = link_states(before)
    return {
        pair: old.get(pair, "new")
        for pair, state in link_states(after).items()
        if old.get(pair) != state
    }
