"""The mesh's status as Prometheus metrics (pure): :class:`MeshHealth` in, metric families out.

Per peer entry of each host, the three families of the widely used WireGuard exporter
(MindFlavor/prometheus_wireguard_exporter, ``src/metrics.rs``), with its names, types, help texts and
labels (``interface``, ``public_key``, ``allowed_ips``, ``friendly_name``), so that dashboards made for
it work unchanged: ``wireguard_sent_bytes_total``, ``wireguard_received_bytes_total`` (counters) and
``wireguard_latest_handshake_seconds`` (a gauge holding the handshake's time in seconds since the
epoch, 0 for never, as there). ``allowed_ips`` is the comma-separated list as ``wg show dump``
prints it. One label is added, ``node``: whose view a series is (that exporter runs on each host and
tells them apart by Prometheus' ``instance``; wiremesh reads every host from one place).

Everything else wiremesh knows goes under ``wiremesh_``: each directed link's state as a state set
(``wiremesh_link_state{state=...}`` is 1 for the current one of direct, relayed, idle, down and 0
for the others), handshake age, endpoint mismatch, interfaces, hosts, and the mesh's totals. Free
text that changes from one read to the next (the reasons of down links: "sent 1234 bytes ...") is
not made a label: each new value would be a new series. ``status`` and ``/status.json`` of the
exporter have the reasons.

The names, types and help texts are fixed here once (:data:`FAMILIES`); the host-side textfile
collector (:mod:`wiremesh.remote.textfile`) writes a subset of them with the same labels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from wiremesh import __version__
from wiremesh.codec.prometheus import Family
from wiremesh.model.health import MeshHealth, NodeStatus, PeerStatus

LINK_STATES = ("direct", "relayed", "idle", "down")
BACKENDS = ("kernel", "wireguard-go")

FAMILIES: dict[str, tuple[str, str]] = {
    # name: (type, help). The first three are MindFlavor's, word for word.
    "wireguard_sent_bytes_total": ("counter", "Bytes sent to the peer"),
    "wireguard_received_bytes_total": ("counter", "Bytes received from the peer"),
    "wireguard_latest_handshake_seconds": ("gauge", "Seconds from the last handshake"),
    "wiremesh_info": ("gauge", "The mesh this output describes (always 1), and wiremesh's version"),
    "wiremesh_healthy": (
        "gauge",
        "1 when every host is reachable with its interface up and no link is down (idle is fine)",
    ),
    "wiremesh_nodes": ("gauge", "Nodes in the inventory"),
    "wiremesh_links_expected": ("gauge", "Directed links a full mesh has: N*(N-1)"),
    "wiremesh_links_up": ("gauge", "Directed links that work (direct or relayed)"),
    "wiremesh_links": ("gauge", "Directed links by state: direct, relayed, idle, down"),
    "wiremesh_read_duration_seconds": (
        "gauge",
        "Seconds it took to get the data of this output from the hosts",
    ),
    "wiremesh_host_reachable": ("gauge", "1 when the latest read of the node's host succeeded"),
    "wiremesh_host_error_info": (
        "gauge",
        "Why the node's host could not be read (always 1; only for hosts whose latest read failed)",
    ),
    "wiremesh_host_read_duration_seconds": (
        "gauge",
        "Seconds the latest successful read of the node's host took",
    ),
    "wiremesh_host_data_age_seconds": (
        "gauge",
        "Age of the host data this output is made from (0 when read for it)",
    ),
    "wiremesh_interface_up": ("gauge", "1 when the node's WireGuard interface exists and is up"),
    "wiremesh_interface_mtu_bytes": ("gauge", "MTU of the node's WireGuard interface"),
    "wiremesh_interface_listen_port": ("gauge", "UDP port the node's WireGuard interface uses"),
    "wiremesh_interface_backend": (
        "gauge",
        "How WireGuard runs on the node: kernel or wireguard-go (1 for the one in use)",
    ),
    "wiremesh_link_state": (
        "gauge",
        "State of the directed link from node to peer: 1 for the current state, 0 for the others",
    ),
    "wiremesh_link_handshake_age_seconds": (
        "gauge",
        "Seconds since node's latest handshake with peer (on the node's clock; absent: never)",
    ),
    "wiremesh_link_endpoint_mismatch": (
        "gauge",
        "1 when the endpoint in use for peer differs from the one node's config file gives",
    ),
    "wiremesh_link_info": (
        "gauge",
        "The link's relay (via), endpoint in use and configured endpoint (always 1)",
    ),
}
"""Every family ``wiremesh metrics`` prints: name -> (type, help)."""

TEXTFILE_FAMILIES = (
    "wireguard_sent_bytes_total",
    "wireguard_received_bytes_total",
    "wireguard_latest_handshake_seconds",
    "wiremesh_info",
    "wiremesh_interface_up",
    "wiremesh_interface_mtu_bytes",
    "wiremesh_interface_listen_port",
    "wiremesh_interface_backend",
    "wiremesh_link_state",
    "wiremesh_link_handshake_age_seconds",
    "wiremesh_link_endpoint_mismatch",
    "wiremesh_link_info",
)
"""The families a host's textfile collector writes (its own view only)."""


def family(name: str) -> Family:
    """An empty family with the fixed type and help of ``name``."""
    kind, text = FAMILIES[name]
    return Family(name, kind, text)


@dataclass(frozen=True)
class HostRead:
    """How a node's host data was got: how long the read took, how old the data is, the error of
    the latest attempt (None when it succeeded)."""

    duration_s: float | None = None
    age_s: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class MetricsInput:
    """What the metrics are made from: the mesh's health and how its data was read."""

    health: MeshHealth
    mesh: str
    interface: str
    reads: Mapping[str, HostRead] = field(default_factory=dict)
    read_duration_s: float | None = None


def _peer_labels(interface: str, node: str, peer: PeerStatus) -> dict[str, str]:
    return {
        "interface": interface,
        "public_key": str(peer.public_key) if peer.public_key else "",
        "allowed_ips": ",".join(str(n) for n in peer.allowed_ips),
        "friendly_name": peer.name,
        "node": node,
    }


def _wireguard(families: dict[str, Family], interface: str, node: NodeStatus) -> None:
    for peer in node.peers:
        if not peer.configured or peer.public_key is None:
            continue  # no entry on the interface: nothing a WireGuard exporter would show
        labels = _peer_labels(interface, node.name, peer)
        families["wireguard_sent_bytes_total"].add(peer.tx_bytes, labels)
        families["wireguard_received_bytes_total"].add(peer.rx_bytes, labels)
        families["wireguard_latest_handshake_seconds"].add(max(0, peer.latest_handshake), labels)


def _links(families: dict[str, Family], node: NodeStatus, names: list[str]) -> None:
    known = {p.name: p for p in node.peers}
    for target in names:
        if target == node.name:
            continue
        peer = known.get(target)
        state = peer.link if peer is not None else "down"  # unreadable host: its links are down
        for s in LINK_STATES:
            families["wiremesh_link_state"].add(
                1 if s == state else 0, {"node": node.name, "peer": target, "state": s}
            )
        if peer is None:
            continue
        pair = {"node": node.name, "peer": target}
        if peer.latest_handshake_age_s is not None:
            families["wiremesh_link_handshake_age_seconds"].add(
                round(peer.latest_handshake_age_s, 3), pair
            )
        if peer.configured:
            families["wiremesh_link_endpoint_mismatch"].add(int(peer.endpoint_mismatch), pair)
        families["wiremesh_link_info"].add(
            1,
            {
                **pair,
                "via": peer.via or "",
                "endpoint": str(peer.endpoint) if peer.endpoint else "",
                "endpoint_configured": (
                    str(peer.configured_endpoint) if peer.configured_endpoint else ""
                ),
            },
        )


def _interface(families: dict[str, Family], interface: str, node: NodeStatus) -> None:
    labels = {"node": node.name, "interface": interface}
    families["wiremesh_interface_up"].add(int(node.interface_up), labels)
    if node.mtu is not None:
        families["wiremesh_interface_mtu_bytes"].add(node.mtu, labels)
    if node.listen_port is not None:
        families["wiremesh_interface_listen_port"].add(node.listen_port, labels)
    if node.backend is not None:
        for backend in BACKENDS:
            families["wiremesh_interface_backend"].add(
                int(backend == node.backend), {**labels, "backend": backend}
            )


def mesh_families(data: MetricsInput) -> list[Family]:
    """Every family of :data:`FAMILIES`, in that order, filled from ``data`` (empty ones included,
    so that the set of names does not depend on the mesh's state)."""
    health = data.health
    families = {name: family(name) for name in FAMILIES}
    names = [n.name for n in health.nodes]
    families["wiremesh_info"].add(
        1, {"mesh": data.mesh, "interface": data.interface, "version": __version__}
    )
    families["wiremesh_healthy"].add(int(health.healthy))
    families["wiremesh_nodes"].add(len(health.nodes))
    families["wiremesh_links_expected"].add(health.links_expected)
    families["wiremesh_links_up"].add(health.links_up)
    for state in LINK_STATES:
        families["wiremesh_links"].add(health.count(state), {"state": state})
    if data.read_duration_s is not None:
        families["wiremesh_read_duration_seconds"].add(round(data.read_duration_s, 6))
    for node in health.nodes:
        read = data.reads.get(node.name, HostRead())
        ok = node.reachable and read.error is None
        families["wiremesh_host_reachable"].add(int(ok), {"node": node.name})
        error = read.error or (None if node.reachable else node.error or "unreachable")
        if error is not None:
            families["wiremesh_host_error_info"].add(1, {"node": node.name, "error": error})
        if read.duration_s is not None:
            families["wiremesh_host_read_duration_seconds"].add(
                round(read.duration_s, 6), {"node": node.name}
            )
        if node.reachable:
            families["wiremesh_host_data_age_seconds"].add(
                round(read.age_s, 3), {"node": node.name}
            )
        if node.reachable:  # an unreadable host's interface is unknown, not down
            _interface(families, data.interface, node)
        _wireguard(families, data.interface, node)
        _links(families, node, names)
    return list(families.values())
