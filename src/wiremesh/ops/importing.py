"""``import``: adopt existing wg-quick configs (one file per host) into an inventory.

Each file becomes a node: its key pair from ``PrivateKey`` (the private key goes to the key directory,
never into the inventory), its address from ``Address``, its port from ``ListenPort``. What the *other*
files say about it (Endpoint, extra AllowedIPs) becomes its endpoint and routed subnets. Files that
disagree — a peer entry whose key or endpoint differs from that peer's own file, overlapping AllowedIPs
— are reported by name and nothing is written.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from pathlib import Path

from wiremesh.codec.wgquick import PeerSection, WgQuickConfig, parse
from wiremesh.errors import OperationError, ValidationError, quote
from wiremesh.model.addressing import IPNetwork
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.inventory import (
    DEFAULT_INTERFACE,
    DEFAULT_MTU,
    DEFAULT_PORT,
    InvalidInventory,
    Inventory,
    MeshSettings,
    Node,
    validate,
)
from wiremesh.model.keys import PrivateKey, PublicKey
from wiremesh.model.names import NodeName, node_name
from wiremesh.ops.import_dropped import unsupported
from wiremesh.ops.import_network import mesh_networks
from wiremesh.store.inventory_file import InventoryFile
from wiremesh.store.keydir import KeyDir
from wiremesh.store.reading import BOM, read_text

_IFACE_STEM = re.compile(r"wg\d*")


@dataclass(frozen=True)
class ImportSource:
    """One file to import, and the node name it becomes."""

    name: NodeName
    path: Path


@dataclass(frozen=True)
class ImportReport:
    """What ``import`` did."""

    created: bool
    nodes: tuple[Node, ...]
    notes: tuple[str, ...]


def source_from_arg(arg: str, interface_stems: bool) -> ImportSource:
    """``NAME=PATH`` or ``PATH``; the name defaults to the file's stem, or to its directory's name when
    the file is named after its interface (``alpha/wg0.conf`` is node ``alpha``)."""
    if "=" in arg and not Path(arg).exists():
        name, given = arg.split("=", 1)
        return ImportSource(node_name(name, f"node name in {quote(arg)}"), Path(given))
    path = Path(arg)
    stem = path.stem
    if interface_stems or _IFACE_STEM.fullmatch(stem):
        stem = path.resolve().parent.name
    try:
        return ImportSource(node_name(stem.lower(), "node name"), path)
    except ValidationError:
        raise ValidationError(
            f"cannot make a node name from {quote(arg)} ({quote(stem)} is not a valid name)",
            f"name it explicitly: wiremesh import NAME={arg}",
        ) from None


@dataclass
class _Host:
    source: ImportSource
    config: WgQuickConfig
    key: PrivateKey
    public: PublicKey
    v4: IPv4Interface
    v6: IPv6Interface | None
    dropped_addresses: tuple[IPv4Interface | IPv6Interface, ...] = ()
    endpoint_claims: dict[str, Endpoint] = field(default_factory=dict)  # by the file claiming it
    extra_claims: dict[str, tuple[IPNetwork, ...]] = field(default_factory=dict)


def _read(source: ImportSource) -> _Host:
    try:
        text = read_text(source.path, "wg-quick file").removeprefix(BOM)
    except FileNotFoundError:
        raise OperationError(
            f"cannot read {source.path}: no such file", "check the path of the config to import"
        ) from None
    config = parse(text, str(source.path))
    iface = config.interface
    if iface.private_key is None:
        raise ValidationError(
            f"{source.path}: no PrivateKey in [Interface]",
            "import needs each host's own config (with its PrivateKey) to know which node it is",
        )
    v4 = [a for a in iface.addresses if isinstance(a, IPv4Interface)]
    v6 = [a for a in iface.addresses if isinstance(a, IPv6Interface)]
    if not v4:
        raise ValidationError(
            f"{source.path}: no IPv4 Address in [Interface]",
            "wiremesh meshes need an IPv4 overlay address on every node",
        )
    return _Host(
        source,
        config,
        iface.private_key,
        iface.private_key.public_key(),
        v4[0],
        v6[0] if v6 else None,
        (*v4[1:], *v6[1:]),
    )


def _own_nets(host: _Host) -> set[IPNetwork]:
    nets: set[IPNetwork] = {IPv4Network(f"{host.v4.ip}/32")}
    if host.v6 is not None:
        nets.add(IPv6Network(f"{host.v6.ip}/128"))
    return nets


def _match(entry: PeerSection, hosts: list[_Host]) -> tuple[_Host | None, bool]:
    """The host a peer entry refers to, and whether its key agrees with that host's own file."""
    for host in hosts:
        if host.public == entry.public_key:
            return host, True
    for host in hosts:
        if any(host.v4.ip in net for net in entry.allowed_ips if net.version == 4):
            return host, False
    return None, False


def _cross_check(hosts: list[_Host]) -> tuple[list[ValidationError], list[str]]:
    problems: list[ValidationError] = []
    notes: list[str] = []
    seen_keys: dict[PublicKey, str] = {}
    for host in hosts:
        if host.public in seen_keys:
            problems.append(
                ValidationError(
                    f"{host.source.path} and {seen_keys[host.public]} have the same PrivateKey",
                    "each host needs its own key pair",
                )
            )
        seen_keys[host.public] = str(host.source.path)
    for host in hosts:
        where = str(host.source.path)
        covered: list[tuple[IPNetwork, str]] = []
        referenced: set[str] = set()
        for entry in host.config.peers:
            label = f"{where}:{entry.line}"
            target, key_ok = _match(entry, hosts)
            for net in entry.allowed_ips:
                for other_net, other_label in covered:
                    if net.version == other_net.version and net.overlaps(other_net):
                        problems.append(
                            ValidationError(
                                f"{label}: AllowedIPs {net} overlaps {other_net} of the peer at "
                                f"{other_label}",
                                "each address may be routed to one peer only: fix one of the entries",
                            )
                        )
                covered.append((net, label))
            if target is None:
                problems.append(
                    ValidationError(
                        f"{label}: peer {entry.public_key} matches none of the imported files",
                        "import that peer's own config too, or remove the entry",
                    )
                )
                continue
            name = target.source.name
            if target is host:
                problems.append(ValidationError(f"{label}: peer entry points at {name} itself"))
                continue
            referenced.add(name)
            if not key_ok:
                problems.append(
                    ValidationError(
                        f"{label}: the peer entry for {name} ({target.v4.ip}) has PublicKey "
                        f"{entry.public_key}, but {name}'s own file {target.source.path} gives "
                        f"{target.public}",
                        f"update the PublicKey in {where}, or check {target.source.path}",
                    )
                )
                continue
            if not any(target.v4.ip in net for net in entry.allowed_ips if net.version == 4):
                problems.append(
                    ValidationError(
                        f"{label}: the peer entry for {name} does not route its address {target.v4.ip}",
                        f"add {target.v4.ip}/32 to AllowedIPs",
                    )
                )
            if entry.endpoint is not None:
                target.endpoint_claims[where] = entry.endpoint
            extra = tuple(
                sorted((n for n in entry.allowed_ips if n not in _own_nets(target)), key=str)
            )
            target.extra_claims[where] = extra
        for other in hosts:
            if other is not host and other.source.name not in referenced:
                notes.append(
                    f"{where} has no peer entry for {other.source.name}; the mesh will add it"
                )
    for host in hosts:
        name = host.source.name
        if len(set(host.endpoint_claims.values())) > 1:
            said = "; ".join(f"{w} says {e}" for w, e in sorted(host.endpoint_claims.items()))
            problems.append(
                ValidationError(
                    f"the endpoint of {name} differs between files: {said}",
                    "make the files agree on where the host is reached",
                )
            )
        if len({tuple(map(str, v)) for v in host.extra_claims.values()}) > 1:
            said = "; ".join(
                f"{w} routes {', '.join(map(str, v)) or 'nothing more'}"
                for w, v in sorted(host.extra_claims.items())
            )
            problems.append(
                ValidationError(
                    f"the subnets routed to {name} differ between files: {said}",
                    "make the AllowedIPs of its peer entries agree",
                )
            )
    return problems, notes


def _mesh_settings(
    hosts: list[_Host],
    name: str,
    interface: str,
    cidr: IPv4Network | None,
    cidr6: IPv6Network | None,
) -> tuple[MeshSettings, tuple[str, ...]]:
    networks = mesh_networks(
        [(str(h.source.path), h.v4) for h in hosts],
        [(str(h.source.path), h.v6) for h in hosts if h.v6 is not None],
        cidr,
        cidr6,
        len(hosts),
    )
    ports = Counter(h.config.interface.listen_port for h in hosts if h.config.interface.listen_port)
    mtus = {h.config.interface.mtu for h in hosts}
    keepalives = Counter(
        p.persistent_keepalive for h in hosts for p in h.config.peers if p.persistent_keepalive
    )
    mesh = MeshSettings(
        cidr=networks.cidr,
        name=name,
        interface=interface,
        cidr6=networks.cidr6,
        port=ports.most_common(1)[0][0] if ports else DEFAULT_PORT,
        mtu=_common_mtu(mtus),
        keepalive=keepalives.most_common(1)[0][0] if keepalives else 25,
    )
    return mesh, networks.notes


def _not_kept(hosts: list[_Host], mesh: MeshSettings) -> list[str]:
    """Values the files hold that the mesh will not keep as they are (besides unmodelled keys)."""
    notes = []
    for host in hosts:
        path, iface = host.source.path, host.config.interface
        if iface.mtu is not None and iface.mtu != mesh.mtu:
            notes.append(f"{path}: MTU {iface.mtu} will not be kept: the mesh uses {mesh.mtu}")
        if host.dropped_addresses:
            listed = ", ".join(map(str, host.dropped_addresses))
            notes.append(f"{path}: Address {listed} will not be kept (one per family)")
        values = {p.persistent_keepalive for p in host.config.peers if p.persistent_keepalive}
        wanted = mesh.keepalive if not host.endpoint_claims else None
        if values and values != {wanted}:
            notes.append(
                f"{path}: PersistentKeepalive {', '.join(map(str, sorted(values)))} will not be "
                "kept as it is: wiremesh sends keepalives (every "
                f"{mesh.keepalive} s) only from nodes without an endpoint"
            )
    return notes


def _common_mtu(mtus: set[int | None]) -> int:
    """The MTU all files set, else the default (1420, which wg-quick also picks on a 1500 underlay)."""
    if len(mtus) == 1:
        only = next(iter(mtus))
        if only is not None:
            return only
    return DEFAULT_MTU


def _node(host: _Host, mesh: MeshSettings) -> Node:
    endpoint = next(iter(host.endpoint_claims.values()), None)
    port = host.config.interface.listen_port
    extra = next(iter(host.extra_claims.values()), ())
    return Node(
        name=host.source.name,
        address=host.v4.ip,
        address6=host.v6.ip if host.v6 is not None and mesh.cidr6 is not None else None,
        endpoint=endpoint,
        listen_port=port if port is not None and port != mesh.port else None,
        public_key=host.public,
        allowed_ips=extra,
    )


def import_configs(
    file: InventoryFile,
    args: list[str],
    mesh_name: str | None = None,
    drop_unsupported: bool = False,
    cidr: IPv4Network | None = None,
    cidr6: IPv6Network | None = None,
) -> ImportReport:
    """Import wg-quick files into ``file`` (created when missing).

    Every key a file holds that the mesh will not keep is reported (``notes``); files with hooks or
    preshared keys are refused unless ``drop_unsupported``. Without ``cidr`` the mesh network comes
    from the files' prefixes, or is inferred (:mod:`wiremesh.ops.import_network`).
    """
    paths = [
        Path(a.split("=", 1)[1]) if "=" in a and not Path(a).exists() else Path(a) for a in args
    ]
    stems = [p.stem for p in paths]
    same_stem = len(paths) > 1 and len(set(stems)) == 1
    sources = [source_from_arg(a, same_stem) for a in args]
    dupes = [n for n, c in Counter(s.name for s in sources).items() if c > 1]
    if dupes:
        raise ValidationError(
            f"two files would become node {quote(dupes[0])}",
            "name them: wiremesh import NAME=FILE ...",
        )
    hosts = [_read(s) for s in sources]
    problems, notes = _cross_check(hosts)
    if problems:
        raise InvalidInventory(problems, "import")
    notes = unsupported([(str(h.source.path), h.config) for h in hosts], drop_unsupported) + notes
    interface = (
        stems[0] if len(set(stems)) == 1 and _IFACE_STEM.fullmatch(stems[0]) else DEFAULT_INTERFACE
    )
    keys = KeyDir.beside(file.path)
    created = not file.exists()
    if created:
        mesh, inferred = _mesh_settings(hosts, mesh_name or "mesh", interface, cidr, cidr6)
        notes += [*inferred, *_not_kept(hosts, mesh)]
        inventory = Inventory(mesh, tuple(_node(h, mesh) for h in hosts))
        validate(inventory, "import")
        for host in hosts:
            keys.put(host.source.name, host.key)
        file.create(inventory, "wiremesh inventory, imported from wg-quick configs.")
        return ImportReport(True, inventory.nodes, tuple(notes))
    with file.edit() as edit:
        current = edit.inventory
        for asked, have, option in (
            (cidr, current.mesh.cidr, "--cidr"),
            (cidr6, current.mesh.cidr6, "--cidr6"),
        ):
            if asked is not None and asked != have:
                raise ValidationError(
                    f"{option} {asked}: the inventory {file.path} already has the mesh network {have}",
                    f"leave {option} out to import into it",
                )
        notes += _not_kept(hosts, current.mesh)
        for host in hosts:
            if current.find(host.source.name) is not None:
                raise ValidationError(
                    f"node {quote(host.source.name)} is already in {file.path}",
                    f"name the file differently: wiremesh import OTHER={host.source.path}",
                )
        new_nodes = tuple(_node(h, current.mesh) for h in hosts)
        updated = replace(current, nodes=current.nodes + new_nodes)
        validate(updated, "import")
        for host in hosts:
            keys.put(host.source.name, host.key)
        edit.inventory = updated
    return ImportReport(False, new_nodes, tuple(notes))
