"""WireGuard devices: what we want on a host, what we observe there, and live counters.

Three kinds of values are kept apart (innernet's ``PeerConfig`` vs ``PeerInfo``/``PeerStats``):

- :class:`WantedDevice` is derived from the inventory: configuration only.
- :class:`ObservedDevice` is what ``wg show <iface> dump`` and ``ip`` report: the same configuration
  fields, read back, so that wanted and observed can be compared field by field.
- :class:`PeerStats` are counters that change by themselves (handshake time, bytes); they never take
  part in a diff.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface

from wiremesh.model.addressing import IPNetwork
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.keys import PublicKey
from wiremesh.model.names import NodeName

IPInterface = IPv4Interface | IPv6Interface


@dataclass(frozen=True)
class WantedPeer:
    """One ``[Peer]`` as wanted: ``public_key`` is None while the peer's key is not known yet."""

    name: NodeName
    public_key: PublicKey | None
    endpoint: Endpoint | None
    allowed_ips: tuple[IPNetwork, ...]
    persistent_keepalive: int | None = None


@dataclass(frozen=True)
class WantedInterface:
    """The ``[Interface]`` settings, without the private key (it lives on the host)."""

    name: str
    addresses: tuple[IPInterface, ...]
    listen_port: int
    mtu: int | None
    # The access policy's table, loaded by a PreUp hook before the interface comes up (docs/policy.md)
    firewall_file: str | None = None


@dataclass(frozen=True)
class WantedDevice:
    """The whole WireGuard configuration wanted on one node."""

    node: NodeName
    interface: WantedInterface
    peers: tuple[WantedPeer, ...]

    def peer(self, name: str) -> WantedPeer | None:
        """The peer called ``name``, if any."""
        for peer in self.peers:
            if peer.name == name:
                return peer
        return None


@dataclass(frozen=True)
class PeerStats:
    """Live counters of one peer; never compared in a plan."""

    latest_handshake: int  # seconds since the epoch; 0 means never (wg(8), wireguard-go UAPI)
    rx_bytes: int
    tx_bytes: int

    def handshake_age(self, now: float) -> float | None:
        """Seconds since the latest handshake, or None if there was none."""
        if self.latest_handshake <= 0:
            return None
        return max(0.0, now - self.latest_handshake)


@dataclass(frozen=True)
class ObservedPeer:
    """One peer as the running interface reports it."""

    public_key: PublicKey
    endpoint: Endpoint | None
    allowed_ips: tuple[IPNetwork, ...]
    persistent_keepalive: int | None
    stats: PeerStats
    preshared_key: bool = False  # one is set (the key itself never leaves the host)


@dataclass(frozen=True)
class ObservedDevice:
    """A running WireGuard interface, as ``wg show dump`` and ``ip`` report it."""

    name: str
    public_key: PublicKey | None
    listen_port: int | None
    peers: tuple[ObservedPeer, ...]
    addresses: tuple[IPInterface, ...] = ()
    mtu: int | None = None

    def peer(self, key: PublicKey) -> ObservedPeer | None:
        """The peer with public key ``key``, if configured."""
        for peer in self.peers:
            if peer.public_key == key:
                return peer
        return None
