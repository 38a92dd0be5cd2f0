"""Plans: the printable changes that bring one host from what it is to what we want (pure).

``plan_host(wanted, observed)`` compares field by field and returns change records. Each record
prints itself ("add peer web-2", "endpoint of db 203.0.113.4:51820 → 198.51.100.4:51820"); an empty
plan means the host is up to date and ``apply`` does no I/O on it (innernet's ``PeerDiff``,
wireguard-tools' ``setconf.c``).

Peer changes on a running interface are carried out one by one with ``wg set``, exactly as listed
here, in the order :mod:`wiremesh.model.live` gives them (no other peer is touched, so their
sessions and routes stay as they are); addresses, MTU and routes have records of their own, carried
out with ``ip``.
"""

from __future__ import annotations

from collections.abc import Mapping

from wiremesh.model.addressing import IPAddress, IPNetwork
from wiremesh.model.changes import (
    AddPeer,
    BringUp,
    Change,
    CreateKey,
    EnableForwarding,
    EnableService,
    HostPlan,
    LinkUp,
    RemoveFile,
    RemovePeer,
    SetAddress,
    SetHostsBlock,
    SetListenPort,
    SetMtu,
    SetPrivateKey,
    SetRoute,
    TearDown,
    UpdatePeer,
    WriteConfig,
    WriteFile,
)
from wiremesh.model.device import (
    ObservedDevice,
    ObservedPeer,
    WantedDevice,
    WantedPeer,
)
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.health import HANDSHAKE_FRESH_S
from wiremesh.model.host import ObservedHost, WantedHost, conflicts
from wiremesh.model.keys import PublicKey


def _fmt_ips(nets: tuple[IPNetwork, ...] | frozenset[IPNetwork]) -> str:
    return ", ".join(sorted(map(str, nets))) or "(none)"


Resolved = Mapping[str, frozenset[IPAddress]]


def same_endpoint(wanted: Endpoint, observed: Endpoint | None, resolved: Resolved) -> bool:
    """True when the running endpoint is the wanted one. A DNS name matches any of the addresses it
    resolved to before planning (wg resolves names once, when the config is loaded)."""
    if observed is None:
        return False
    if wanted.is_ip:
        return wanted == observed
    addresses = resolved.get(str(wanted.host))
    if addresses is None:  # could not resolve here: trust the host's own resolution
        return wanted.port == observed.port
    return wanted.port == observed.port and observed.host in addresses


def diff_peer(
    wanted: WantedPeer, observed: ObservedPeer, resolved: Resolved | None = None
) -> list[Change]:
    """The settings of a configured peer that differ from the wanted ones.

    An observed endpoint is compared only when we want a fixed one: without one, WireGuard learns
    the peer's address from its packets (roaming), and that is not a difference.
    """
    out: list[Change] = []
    key = observed.public_key
    if wanted.endpoint is not None and not same_endpoint(
        wanted.endpoint, observed.endpoint, resolved or {}
    ):
        out.append(
            UpdatePeer(
                wanted.name,
                "endpoint",
                str(observed.endpoint or "(none)"),
                str(wanted.endpoint),
                public_key=key,
                endpoint=wanted.endpoint,
            )
        )
    if frozenset(wanted.allowed_ips) != frozenset(observed.allowed_ips):
        out.append(
            UpdatePeer(
                wanted.name,
                "allowed IPs",
                _fmt_ips(observed.allowed_ips),
                _fmt_ips(wanted.allowed_ips),
                public_key=key,
                allowed_ips=wanted.allowed_ips,
                old_allowed_ips=observed.allowed_ips,
            )
        )
    if (wanted.persistent_keepalive or None) != (observed.persistent_keepalive or None):
        out.append(
            UpdatePeer(
                wanted.name,
                "keepalive",
                str(observed.persistent_keepalive or "off"),
                str(wanted.persistent_keepalive or "off"),
                public_key=key,
                keepalive=wanted.persistent_keepalive or 0,
            )
        )
    if observed.preshared_key:  # wiremesh sets none; one set by hand is not in the config file
        out.append(UpdatePeer(wanted.name, "preshared key", "set", "none", public_key=key))
    return out


def diff_peers(
    wanted: WantedDevice,
    observed: ObservedDevice,
    names: Mapping[PublicKey, str],
    resolved: Resolved | None = None,
) -> list[Change]:
    """Peer additions, removals and updates between two devices."""
    out: list[Change] = []
    wanted_keys = {p.public_key for p in wanted.peers if p.public_key is not None}
    for peer in wanted.peers:
        if peer.public_key is None:
            out.append(AddPeer(peer.name, peer.endpoint, peer.allowed_ips, key_known=False))
            continue
        current = observed.peer(peer.public_key)
        if current is None:
            out.append(
                AddPeer(
                    peer.name,
                    peer.endpoint,
                    peer.allowed_ips,
                    public_key=peer.public_key,
                    keepalive=peer.persistent_keepalive,
                )
            )
        else:
            out.extend(diff_peer(peer, current, resolved))
    for current in observed.peers:
        if current.public_key not in wanted_keys:
            label = names.get(current.public_key, f"with key {current.public_key}")
            out.append(RemovePeer(label, current.public_key))
    return out


def diff_interface(
    wanted: WantedHost, observed: ObservedDevice, routes: list[IPNetwork]
) -> list[Change]:
    """Address, MTU and route differences of a running interface."""
    out: list[Change] = []
    want_addrs = set(wanted.device.interface.addresses)
    have_addrs = set(observed.addresses)
    out += [SetAddress(a, True) for a in wanted.device.interface.addresses if a not in have_addrs]
    out += [SetAddress(a, False) for a in observed.addresses if a not in want_addrs]
    port = wanted.device.interface.listen_port
    if observed.listen_port != port:
        out.append(SetListenPort(observed.listen_port, port))
    mtu = wanted.device.interface.mtu
    if mtu is not None and observed.mtu != mtu:
        out.append(SetMtu(observed.mtu, mtu))
    want_routes = set(wanted.routes)
    out += [SetRoute(n, True) for n in wanted.routes if n not in routes]
    out += [SetRoute(n, False) for n in routes if n not in want_routes]
    return out


def roamed(change: Change, observed: ObservedHost) -> str | None:
    """A note instead of an endpoint change, when setting it again would not help: our file already
    says the wanted endpoint, and the peer answers (a fresh handshake) from another one. WireGuard
    follows a peer's authenticated packets (roaming), so the configured endpoint is probably wrong
    (a wrong port, say), and setting it again would only break the link until the peer's next
    packet. Status shows the same mismatch."""
    if not (isinstance(change, UpdatePeer) and change.setting == "endpoint"):
        return None
    config, device = observed.config, observed.device
    if config is None or not config.managed or device is None or change.public_key is None:
        return None
    if config.endpoints.get(change.public_key) != change.endpoint:
        return None
    peer = device.peer(change.public_key)
    age = peer.stats.handshake_age(observed.now) if peer is not None else None
    if age is None or age > HANDSHAKE_FRESH_S:
        return None
    return (
        f"peer {change.name}: its configured endpoint {change.new} is not the one in use, "
        f"{change.old}, which works (handshake {age:.0f} s ago); WireGuard follows the peer's "
        f"packets, so the configured one is probably wrong: check {change.name}'s endpoint and "
        "listen port in the inventory"
    )


def create_key(observed: ObservedHost) -> CreateKey:
    """Where a host without a key file gets its key: the running interface's key first (its peers
    know it), else the key of the config file there, else a new one. ``observed.public_key`` is the
    key the inventory (or the host) knew: a new key replaces it on every peer."""
    device = observed.device
    if device is not None and device.public_key is not None:
        return CreateKey("interface")
    if observed.config is not None:
        return CreateKey("config")
    return CreateKey("new", lost=observed.public_key is not None)


def owner_conflicts(observed: ObservedHost, mesh: str, config_path: str) -> list[str]:
    """The interface belongs to another mesh (its config's marker line names it): never taken over
    without ``--force``."""
    config = observed.config
    owner = config.mesh if config is not None else None
    if owner is None or owner == mesh:
        return []
    return [
        f"{config_path} belongs to mesh {owner!r}, not {mesh!r}: applying would take its "
        "interface over"
    ]


def key_path(config_path: str) -> str:
    """The host's key file beside its config (``/etc/wireguard/wg0.conf`` → ``wg0.key``)."""
    return config_path.removesuffix(".conf") + ".key"


def plan_host(
    node: str,
    wanted: WantedHost,
    observed: ObservedHost,
    config_path: str,
    names: Mapping[PublicKey, str],
    resolved: Resolved | None = None,
) -> HostPlan:
    """Everything to change on one reachable host. ``names`` names peers by key for removals."""
    changes: list[Change] = []
    notes: list[str] = []  # things left alone on purpose, for the user to know
    if not observed.key_file:
        changes.append(create_key(observed))
    config = observed.config
    if config is None:
        changes.append(WriteConfig(config_path, "new"))
    elif not config.managed:
        changes.append(
            WriteConfig(config_path, "replaces a config not made by wiremesh; kept as .orig")
        )
    elif config.text != wanted.config_text or any(
        p.public_key is None for p in wanted.device.peers
    ):
        # (a peer whose key is made during this apply changes the config too, once it is known)
        changes.append(WriteConfig(config_path, "changed"))
    device = observed.device
    if device is None:
        changes.append(BringUp(wanted.device.interface.name, len(wanted.device.peers)))
    else:
        if not observed.link_up:
            changes.append(LinkUp(wanted.device.interface.name))
        if (
            observed.public_key is not None
            and device.public_key is not None
            and device.public_key != observed.public_key
        ):
            changes.append(SetPrivateKey(key_path(config_path)))
        for change in diff_peers(wanted.device, device, names, resolved):
            note = roamed(change, observed)
            if note is None:
                changes.append(change)
            else:
                notes.append(note)
        added = [r.network for r in observed.routes if r.protocol != "kernel"]
        changes += diff_interface(wanted, device, added)
    if wanted.hosts_block and observed.hosts_block != wanted.hosts_block:
        count = len({line.split()[1] for line in wanted.hosts_block})
        changes.append(SetHostsBlock(count))
    v4, v6 = wanted.forwarding
    need4 = v4 and not observed.forwarding[0]
    need6 = v6 and not observed.forwarding[1]
    if need4 or need6:
        changes.append(EnableForwarding(need4, need6))
    for file in wanted.files:
        state = observed.files.get(file.path)
        if not file.present:
            if state is not None and state.exists and state.managed:
                changes.append(RemoveFile(file.path))
            continue
        if state is None or not state.exists:
            changes.append(WriteFile(file.path, "new"))
        elif not state.managed:
            notes.append(f"{file.path} exists and was not written by wiremesh: left as it is")
        elif state.sha256 != file.sha256 or state.mode != file.mode:
            changes.append(WriteFile(file.path, "changed"))
    if observed.systemd and not observed.service_enabled:
        changes.append(EnableService(wanted.device.interface.name))
    found = owner_conflicts(observed, wanted.mesh, config_path)
    found += conflicts(observed, wanted.mesh_networks, wanted.device.interface.name)
    return HostPlan(node, tuple(changes), tuple(found), tuple(notes))


__all__ = [
    "AddPeer",
    "BringUp",
    "Change",
    "CreateKey",
    "EnableForwarding",
    "EnableService",
    "HostPlan",
    "LinkUp",
    "RemoveFile",
    "RemovePeer",
    "Resolved",
    "SetAddress",
    "SetHostsBlock",
    "SetListenPort",
    "SetMtu",
    "SetPrivateKey",
    "SetRoute",
    "TearDown",
    "UpdatePeer",
    "WriteConfig",
    "WriteFile",
    "diff_interface",
    "diff_peer",
    "diff_peers",
    "plan_host",
    "same_endpoint",
]
