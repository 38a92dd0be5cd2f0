"""Mesh health from observations (pure): per-node status, links, the ping matrix, ``healthy``.

A link is directed: A→B is up when A's peer entry for B had a handshake in the last
:data:`HANDSHAKE_FRESH_S` seconds. WireGuard renews sessions every 2 minutes while traffic flows
(REKEY_AFTER_TIME = 120 s in the protocol), so 180 s means "a session is live"; an idle link without
keepalives shows no recent handshake even though it works: ``status --ping`` sends traffic first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from wiremesh.model.endpoint import Endpoint
from wiremesh.model.host import ObservedHost
from wiremesh.model.keys import PublicKey

HANDSHAKE_FRESH_S = 180


@dataclass(frozen=True)
class PeerStatus:
    """One peer as one node sees it."""

    name: str
    public_key: PublicKey | None
    configured: bool
    endpoint: Endpoint | None
    latest_handshake_age_s: float | None
    rx_bytes: int
    tx_bytes: int

    @property
    def up(self) -> bool:
        """A handshake in the last 180 s."""
        age = self.latest_handshake_age_s
        return age is not None and age <= HANDSHAKE_FRESH_S


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

    @property
    def healthy(self) -> bool:
        """Every node reachable with its interface up, every link up, and (with pings) every pair
        answering."""
        if not all(n.reachable and n.interface_up for n in self.nodes):
            return False
        if self.links_up != self.links_expected:
            return False
        return self.ping is None or all(p.received > 0 for p in self.ping)


def node_status(name: str, seen: ObservedHost, peers: Mapping[str, PublicKey | None]) -> NodeStatus:
    """The status of one reachable node; ``peers`` are the other nodes' keys, by name."""
    device = seen.device
    if device is None:
        return NodeStatus(name, True, backend=seen.backend)
    out: list[PeerStatus] = []
    for peer_name, key in peers.items():
        current = device.peer(key) if key is not None else None
        if current is None:
            out.append(PeerStatus(peer_name, key, False, None, None, 0, 0))
            continue
        out.append(
            PeerStatus(
                peer_name,
                key,
                True,
                current.endpoint,
                current.stats.handshake_age(seen.now),
                current.stats.rx_bytes,
                current.stats.tx_bytes,
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


def mesh_health(nodes: list[NodeStatus], ping: list[PingResult] | None) -> MeshHealth:
    """Links expected (every ordered pair) and up."""
    count = len(nodes)
    expected = count * (count - 1)
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
