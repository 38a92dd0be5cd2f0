"""Change records: one printable change on one host each, and the plan that lists them (pure).

A record prints itself ("add peer web-2 at 198.51.100.20:51820", "MTU 1420 → 1400") and has a stable
``kind`` for scripts; :mod:`wiremesh.model.plan` makes them, :mod:`wiremesh.remote.hostops` carries
them out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wiremesh.model.addressing import IPNetwork
from wiremesh.model.device import IPInterface
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.keys import PublicKey


@dataclass(frozen=True)
class Change:
    """One change on one host."""

    def describe(self) -> str:  # pragma: no cover - every subclass overrides
        """One line for people."""
        raise NotImplementedError

    @property
    def kind(self) -> str:
        """A stable name for scripts (``--json``)."""
        name = type(self).__name__
        return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


@dataclass(frozen=True)
class CreateKey(Change):
    """Give the host its key file: from the running interface, from the existing config, or a new
    key (``umask 077; wg genkey``); all on the host, the key never leaves it.

    ``source`` is "interface", "config" or "new"; ``lost`` means the inventory knew a public key
    for this node that only a new key can replace (then every peer gets the new one).
    """

    source: str = "new"
    lost: bool = False

    @property
    def adopt_from_config(self) -> bool:
        """True when the key of an existing config is kept."""
        return self.source == "config"

    def describe(self) -> str:
        if self.source == "interface":
            return "recover the key file from the running interface's private key (on the host)"
        if self.source == "config":
            return (
                "keep the private key of the existing config (moved to the key file, on the host)"
            )
        if self.lost:
            return "create a new private key on the host (its key is lost: every peer gets the new one)"
        return "create a private key on the host"


@dataclass(frozen=True)
class WriteConfig(Change):
    """Write the managed config file."""

    path: str
    reason: str  # "new", "changed", "replaces a config not made by wiremesh"

    def describe(self) -> str:
        return f"write {self.path} ({self.reason})"


@dataclass(frozen=True)
class BringUp(Change):
    """First bring-up with ``wg-quick up``."""

    interface: str
    peers: int

    def describe(self) -> str:
        return f"bring up {self.interface} with {self.peers} peer(s) (wg-quick up)"


@dataclass(frozen=True)
class LinkUp(Change):
    """The interface exists but is down: set it up (and then change it live)."""

    interface: str

    def describe(self) -> str:
        return f"set {self.interface} up"


@dataclass(frozen=True)
class AddPeer(Change):
    """A peer that is wanted but not configured (``public_key`` is None while it is being made)."""

    name: str
    endpoint: Endpoint | None
    allowed_ips: tuple[IPNetwork, ...]
    key_known: bool = True
    public_key: PublicKey | None = None
    keepalive: int | None = None

    def describe(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        note = "" if self.key_known else " (its key is made during apply)"
        return f"add peer {self.name}{where}{note}"


@dataclass(frozen=True)
class RemovePeer(Change):
    """A configured peer that is no longer wanted."""

    name: str
    public_key: PublicKey | None = None

    def describe(self) -> str:
        return f"remove peer {self.name}"


@dataclass(frozen=True)
class UpdatePeer(Change):
    """One setting of a configured peer differs.

    ``setting`` is one of :data:`PEER_SETTINGS`; ``old`` and ``new`` are for people, the typed
    fields after them are what apply sets: ``endpoint``, ``allowed_ips`` (the whole wanted list, with
    ``old_allowed_ips`` as observed), ``keepalive`` (0 = off), or nothing for "preshared key" (which
    wiremesh does not use: a key found on the interface is cleared).
    """

    name: str
    setting: str
    old: str
    new: str
    public_key: PublicKey | None = None
    endpoint: Endpoint | None = None
    allowed_ips: tuple[IPNetwork, ...] = ()
    old_allowed_ips: tuple[IPNetwork, ...] = ()
    keepalive: int = 0

    def describe(self) -> str:
        return f"{self.setting} of {self.name}: {self.old} → {self.new}"


PEER_SETTINGS = ("endpoint", "allowed IPs", "keepalive", "preshared key")


@dataclass(frozen=True)
class SetPrivateKey(Change):
    """The running interface has another private key than the host's key file: load the file's."""

    path: str

    def describe(self) -> str:
        return f"load the private key from {self.path} (the running interface has another key)"


@dataclass(frozen=True)
class SetAddress(Change):
    """Add or remove an interface address."""

    address: IPInterface
    add: bool

    def describe(self) -> str:
        return f"{'add' if self.add else 'remove'} address {self.address}"


@dataclass(frozen=True)
class SetListenPort(Change):
    """Change the UDP listen port (``wg set <iface> listen-port``)."""

    old: int | None
    new: int

    def describe(self) -> str:
        return f"listen port {self.old} → {self.new}"


@dataclass(frozen=True)
class SetMtu(Change):
    """Change the interface MTU."""

    old: int | None
    new: int

    def describe(self) -> str:
        return f"MTU {self.old} → {self.new}"


@dataclass(frozen=True)
class SetRoute(Change):
    """Add or remove a route through the interface (AllowedIPs outside the interface subnet)."""

    network: IPNetwork
    add: bool

    def describe(self) -> str:
        return f"{'add' if self.add else 'remove'} route {self.network}"


@dataclass(frozen=True)
class SetHostsBlock(Change):
    """Write the mesh's block in /etc/hosts (``<node>.<mesh>`` names)."""

    names: int

    def describe(self) -> str:
        return f"update the /etc/hosts block ({self.names} name(s))"


@dataclass(frozen=True)
class EnableForwarding(Change):
    """Enable IP forwarding (a relay, or a node with subnets behind it), now and after reboots."""

    ipv4: bool
    ipv6: bool

    def describe(self) -> str:
        families = " and ".join(f for f, on in (("IPv4", self.ipv4), ("IPv6", self.ipv6)) if on)
        return f"enable {families} forwarding"


@dataclass(frozen=True)
class WriteFile(Change):
    """Write a managed file (besides the WireGuard config)."""

    path: str
    reason: str

    def describe(self) -> str:
        return f"write {self.path} ({self.reason})"


@dataclass(frozen=True)
class RemoveFile(Change):
    """Remove a managed file that is no longer wanted (an opt-in turned off)."""

    path: str

    def describe(self) -> str:
        return f"remove {self.path} (no longer wanted)"


@dataclass(frozen=True)
class EnableService(Change):
    """Enable ``wg-quick@<iface>`` so that the mesh comes back after a reboot."""

    interface: str

    def describe(self) -> str:
        return f"enable wg-quick@{self.interface} (survives reboots)"


@dataclass(frozen=True)
class TearDown(Change):
    """Take a removed node out of the mesh: interface down, service off, config and key removed."""

    interface: str

    def describe(self) -> str:
        return f"take {self.interface} down and remove its config and key (node removed)"


@dataclass(frozen=True)
class HostPlan:
    """All changes for one host, in the order apply carries them out."""

    node: str
    changes: tuple[Change, ...] = field(default=())
    conflicts: tuple[str, ...] = field(default=())  # overlaps with the host's own networks
    notes: tuple[str, ...] = field(default=())  # things left alone on purpose, for the user to know

    @property
    def empty(self) -> bool:
        """True when the host is up to date."""
        return not self.changes

    def of(self, kind: type[Change]) -> list[Change]:
        """The changes of one type."""
        return [c for c in self.changes if isinstance(c, kind)]
