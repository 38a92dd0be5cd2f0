"""Shared pieces of the use cases that talk to hosts: targets, SSH options, observing in parallel."""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import ip_address
from pathlib import Path

from wiremesh.codec.wgquick import KeyFile, render
from wiremesh.errors import ValidationError, quote
from wiremesh.model.addressing import IPAddress
from wiremesh.model.endpoint import Endpoint, SshTarget
from wiremesh.model.facts import underlay_targets
from wiremesh.model.host import ManagedFile, ObservedHost, WantedHost, extra_routes
from wiremesh.model.inventory import Inventory, Node, RemovedNode
from wiremesh.model.keys import PublicKey
from wiremesh.model.policy.compile import compile_inventory
from wiremesh.model.topology import (
    NO_FACTS,
    Facts,
    active_relays,
    forwarding_needed,
    hosts_block,
    wanted_device,
    wanted_mesh,
)
from wiremesh.ops.ssh_trust import check_inventory_ssh_config
from wiremesh.remote import hostops, nft, scripts
from wiremesh.remote.fanout import NoProgress, Progress, fan_out
from wiremesh.remote.limits import DEFAULT_PARALLEL
from wiremesh.remote.lock import lock_all
from wiremesh.remote.ssh import HostError, Sessions, SshOptions, connect
from wiremesh.store.inventory_file import InventoryFile

FilesFor = Callable[[Inventory], Mapping[str, tuple[ManagedFile, ...]]]
"""Given the inventory, the managed files wanted on each node's host (by node name)."""


@dataclass(frozen=True)
class RunOptions:
    """How a command that talks to hosts runs."""

    # --ssh-config; else the inventory's ssh_config; else ~/.ssh/config
    ssh_config: Path | None = None
    accept_new_host_keys: bool = False
    parallel: int = DEFAULT_PARALLEL
    connect_timeout: float = 15.0
    command_timeout: float = 120.0
    progress: Progress = field(default_factory=NoProgress)
    extra_files: FilesFor | None = None  # managed files besides the WireGuard config (k3s...)
    trust_ssh_config: bool = False  # the inventory's ssh_config may run local commands
    # How a running interface changes: always "wg-set"; "syncconf" and "restart" exist only as the
    # references that bench/live.py measures against (see wiremesh.remote.live).
    live_method: str = "wg-set"
    lock_timeout: float = 60.0  # how long apply waits for another run's host locks
    confirm_timeout: int = 60  # a guard change is undone by the host unless confirmed within this


def ssh_options(file: InventoryFile, inventory: Inventory, options: RunOptions) -> SshOptions:
    """SSH options: ``--ssh-config`` wins over the inventory's ``ssh_config`` (relative to its file).

    The inventory's own ssh_config is checked first: one that runs local commands is refused unless
    ``trust_ssh_config`` (:mod:`wiremesh.ops.ssh_trust`).
    """
    config = options.ssh_config
    from_inventory = config is None and bool(inventory.mesh.ssh_config)
    if config is None and inventory.mesh.ssh_config:
        config = file.directory / Path(inventory.mesh.ssh_config).expanduser()
    if config is not None and not config.is_file():
        raise ValidationError(
            f"SSH config {config} does not exist (or is not a regular file)",
            "fix 'ssh_config' in [mesh] or the --ssh-config option",
        )
    if config is not None and from_inventory:
        check_inventory_ssh_config(config, options.trust_ssh_config, file.directory)
    return SshOptions(
        config=config,
        accept_new_host_keys=options.accept_new_host_keys,
        connect_timeout=options.connect_timeout,
        command_timeout=options.command_timeout,
    )


def resolve_endpoints(inventory: Inventory) -> dict[str, frozenset[IPAddress]]:
    """The addresses of every DNS-name endpoint (so that plans compare them with what wg shows).

    Names that do not resolve here are left out: the plan then trusts the host's own resolution.
    """
    names = {
        str(e.host)
        for n in inventory
        for e in (n.endpoint, n.private_endpoint)
        if e is not None and not e.is_ip
    }
    out: dict[str, frozenset[IPAddress]] = {}
    for name in sorted(names):
        try:
            infos = socket.getaddrinfo(name, None, type=socket.SOCK_DGRAM)
        except OSError:
            continue
        out[name] = frozenset(ip_address(str(info[4][0]).split("%")[0]) for info in infos)
    return out


def ssh_target(node: Node | RemovedNode) -> SshTarget:
    """The node's ``ssh``, else ``root@<endpoint host>:22``."""
    if node.ssh is not None:
        return node.ssh
    if node.endpoint is not None:
        return SshTarget(node.endpoint.host, "root", None)
    raise ValidationError(
        f"node {quote(node.name)} has neither 'ssh' nor 'endpoint': wiremesh cannot reach it",
        f"set one: wiremesh node set {node.name} --ssh root@HOST",
    )


def select(inventory: Inventory, names: list[str]) -> list[str]:
    """The nodes to work on: all, or those named (which must exist)."""
    if not names:
        return [str(n) for n in inventory.names()] + [str(r.name) for r in inventory.removed]
    for name in names:
        if name not in inventory.names() and not any(r.name == name for r in inventory.removed):
            inventory.node(name)  # raises the did-you-mean error
    return names


def effective_keys(
    inventory: Inventory, observed: Mapping[str, ObservedHost | HostError]
) -> dict[str, PublicKey | None]:
    """Each node's public key: what its host has (the key file, else the running interface: the truth
    its peers know), else what the inventory recorded."""
    keys: dict[str, PublicKey | None] = {}
    for node in inventory:
        seen = observed.get(node.name)
        if isinstance(seen, ObservedHost) and seen.public_key is not None:
            keys[node.name] = seen.public_key
        elif isinstance(seen, ObservedHost) and seen.device and seen.device.public_key:
            keys[node.name] = seen.device.public_key
        else:
            keys[node.name] = node.public_key
    return keys


def with_keys(inventory: Inventory, keys: Mapping[str, PublicKey | None]) -> Inventory:
    """The inventory with these public keys recorded."""
    nodes = tuple(
        replace(n, public_key=keys[n.name])
        if n.name in keys and keys[n.name] != n.public_key
        else n
        for n in inventory
    )
    return replace(inventory, nodes=nodes)


def wanted_hosts(
    inventory: Inventory,
    pending: frozenset[str] = frozenset(),
    facts: Facts = NO_FACTS,
    files: Mapping[str, tuple[ManagedFile, ...]] | None = None,
) -> dict[str, WantedHost]:
    """What each node's host should hold.

    A peer can be configured only once its public key exists. Nodes in ``pending`` get their key
    during this run: they appear as peers (with no key yet) so that the plan shows them, but not in
    config texts. Other nodes without a key (their host unreachable) are left out until a later run.
    """
    _, key_path = scripts.paths(inventory.mesh.interface)
    usable = replace(
        inventory,
        nodes=tuple(n for n in inventory if n.public_key is not None or n.name in pending),
    )
    keyed = replace(inventory, nodes=tuple(n for n in inventory if n.public_key is not None))
    devices = wanted_mesh(usable, facts)
    config_devices = wanted_mesh(keyed, facts)
    block = hosts_block(inventory)
    relays = active_relays(inventory, facts)
    firewalls = compile_inventory(inventory)
    networks = tuple(n for n in (inventory.mesh.cidr, inventory.mesh.cidr6) if n is not None)
    memo: dict[int, str] = {}
    out: dict[str, WantedHost] = {}
    for node in inventory:
        device = devices.get(node.name) or wanted_device(usable.with_node(node), node, facts)
        config_device = config_devices.get(node.name)
        shared = config_device is not None  # memo keys are peer ids: only for long-lived peers
        if config_device is None:
            config_device = wanted_device(keyed.with_node(node), node, facts)
        firewall = firewalls.get(node.name)
        if firewall is not None:
            hook = replace(config_device.interface, firewall_file=nft.boot_file(firewall.interface))
            config_device = replace(config_device, interface=hook)
        text = render(
            config_device,
            KeyFile(key_path),
            f"node {node.name} of mesh {inventory.mesh.name}",
            memo if shared else None,
        )
        out[node.name] = WantedHost(
            device,
            text,
            extra_routes(device),
            hosts_block=block,
            files=(files or {}).get(node.name, ()),
            forwarding=forwarding_needed(inventory, node, facts, relays),
            mesh_networks=networks,
            mesh=inventory.mesh.name,
            firewall=firewall,
        )
    return out


async def connect_and_lock(
    sessions: Sessions,
    targets: Mapping[str, SshTarget],
    inventory: Inventory,
    ssh: SshOptions,
    options: RunOptions,
    command: str,
) -> dict[str, HostError]:
    """Connect to every target and take each host's lock (all or none, see
    :mod:`wiremesh.remote.lock`); the locks are held until ``sessions`` closes. Returns the hosts
    that could not be reached; raises :class:`~wiremesh.errors.OperationError` when another run
    holds locks past ``options.lock_timeout``."""

    async def one(name: str) -> None:
        if name not in sessions.open:
            sessions.open[name] = await connect(name, targets[name], ssh)

    done = await fan_out(
        targets, one, limit=options.parallel, progress=options.progress, label="connecting"
    )
    failed = {n: e for n, e in done.items() if isinstance(e, HostError)}
    reachable = [sessions.open[n] for n in targets if n not in failed]
    held, lost = await lock_all(reachable, inventory.mesh.interface, options.lock_timeout, command)
    sessions.locks.update(held)
    return {**failed, **lost}


async def open_and_observe(
    sessions: Sessions,
    targets: Mapping[str, SshTarget],
    inventory: Inventory,
    ssh: SshOptions,
    options: RunOptions,
    label: str = "reading hosts",
    learnt: Mapping[str, Endpoint] | None = None,
    files: Mapping[str, tuple[ManagedFile, ...]] | None = None,
    full: bool = True,
    failed: Mapping[str, HostError] | None = None,
) -> dict[str, ObservedHost | HostError]:
    """Connect to every target (one connection each, kept in ``sessions``) and observe it.

    Each node's host also reports the MTU of its routes toward its peers' underlay addresses
    (``learnt``: the public addresses seen for nodes behind NAT). Hosts in ``failed`` (they could
    not be reached before) are not tried again.
    """
    interface = inventory.mesh.interface
    known = dict(failed or {})

    async def one(name: str) -> ObservedHost:
        if name in known:
            raise known[name]
        session = sessions.open.get(name)
        if session is None:
            session = await connect(name, targets[name], ssh)
            sessions.open[name] = session
        node = inventory.find(name)
        underlay: tuple[str, ...] = ()
        if node is not None and inventory.mesh.mtu == "auto":
            underlay = underlay_targets(inventory, node, learnt or {})
        paths = tuple(f.path for f in (files or {}).get(name, ()))
        return await hostops.observe(
            session,
            interface,
            inventory.mesh.name,
            underlay,
            paths,
            full=full,
            policy=inventory.policy is not None,
        )

    return await fan_out(
        targets, one, limit=options.parallel, progress=options.progress, label=label
    )
