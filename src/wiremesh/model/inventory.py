"""The inventory: the desired state of the mesh, as validated values.

These types hold only what the user (or the tool, for public keys) decided. Derived things (peers,
endpoints to use, keepalives) come from :mod:`wiremesh.model.topology`; what runs on a host is a
different type altogether (:mod:`wiremesh.model.device`).
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TYPE_CHECKING

from wiremesh.errors import ValidationError, quote
from wiremesh.model.addressing import IPNetwork, host_capacity, is_host_address
from wiremesh.model.endpoint import Endpoint, SshTarget
from wiremesh.model.keys import PublicKey
from wiremesh.model.names import NodeName
from wiremesh.model.networks import endpoint_problems, network_problems

if TYPE_CHECKING:
    from wiremesh.model.policy.rules import Policy

FORMAT_VERSION = 1
DEFAULT_INTERFACE = "wg0"
DEFAULT_PORT = 51820
DEFAULT_MTU = 1420
MTU_AUTO = "auto"  # derive each host's MTU from its underlay path
DEFAULT_KEEPALIVE = 25
MTU_MIN_IPV4 = 576  # RFC 791: every IPv4 host must accept 576-byte datagrams
MTU_MIN_IPV6 = 1280  # RFC 8200 section 5
MTU_MAX = 9000


@dataclass(frozen=True)
class MeshSettings:
    """The ``[mesh]`` table: what all nodes share."""

    cidr: IPv4Network
    name: str = "mesh"
    interface: str = DEFAULT_INTERFACE
    cidr6: IPv6Network | None = None
    port: int = DEFAULT_PORT
    mtu: int | str = DEFAULT_MTU  # a number, or MTU_AUTO
    keepalive: int = DEFAULT_KEEPALIVE
    ssh_config: str | None = None
    relay: NodeName | None = None  # forwards between nodes that have no endpoint


DEFAULT_TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"  # Debian's prometheus-node-exporter
DEFAULT_METRICS_INTERVAL = 30
METRICS_INTERVAL_RANGE = (5, 3600)


@dataclass(frozen=True)
class MetricsSettings:
    """The ``[metrics]`` table: with ``textfile``, apply installs on every host a script and a
    systemd timer that write the host's WireGuard metrics for node_exporter's textfile collector
    every ``interval`` seconds into ``directory`` (see README, "Metrics")."""

    textfile: bool = False
    interval: int = DEFAULT_METRICS_INTERVAL
    directory: str = DEFAULT_TEXTFILE_DIR


@dataclass(frozen=True)
class Node:
    """One ``[[node]]`` entry."""

    name: NodeName
    address: IPv4Address
    address6: IPv6Address | None = None
    endpoint: Endpoint | None = None
    ssh: SshTarget | None = None
    site: str | None = None
    private_endpoint: Endpoint | None = None
    listen_port: int | None = None
    public_key: PublicKey | None = None
    allowed_ips: tuple[IPNetwork, ...] = ()
    relay: NodeName | None = None  # overrides the mesh's relay for this node
    k3s_role: str | None = None  # "server" or "agent": used by 'k3s config' and 'apply --k3s'
    groups: tuple[str, ...] = ()  # policy groups (docs/policy.md)


K3S_ROLES = ("server", "agent")


@dataclass(frozen=True)
class RemovedNode:
    """A ``[[removed]]`` entry: a node taken out with ``node rm`` that ``apply`` has not torn down
    yet. It keeps what apply needs to reach the host; apply deletes the entry once the host is clean.
    """

    name: NodeName
    ssh: SshTarget | None = None
    endpoint: Endpoint | None = None
    public_key: PublicKey | None = None


@dataclass(frozen=True)
class Inventory:
    """The whole desired state: mesh settings and nodes, in file order."""

    mesh: MeshSettings
    nodes: tuple[Node, ...] = ()
    removed: tuple[RemovedNode, ...] = ()
    policy: Policy | None = None  # the [policy] table; None: no policy, nothing installed
    metrics: MetricsSettings = MetricsSettings()

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes)

    def names(self) -> list[NodeName]:
        """Node names in file order."""
        return [n.name for n in self.nodes]

    @cached_property
    def positions(self) -> dict[str, int]:
        """Each node's index in file order (computed once per inventory value)."""
        return {n.name: i for i, n in enumerate(self.nodes)}

    def find(self, name: str) -> Node | None:
        """The node called ``name``, or None."""
        for node in self.nodes:
            if node.name == name:
                return node
        return None

    def node(self, name: str) -> Node:
        """The node called ``name``; an unknown name is an error with a did-you-mean."""
        found = self.find(name)
        if found is None:
            raise unknown_node(name, self.names())
        return found

    def with_node(self, node: Node) -> Inventory:
        """This inventory with ``node`` replacing the node of the same name, or appended."""
        if self.find(node.name) is None:
            return replace(self, nodes=(*self.nodes, node))
        return replace(self, nodes=tuple(node if n.name == node.name else n for n in self.nodes))

    def without(self, name: str, remember: bool = False) -> Inventory:
        """This inventory without node ``name`` (which must exist); with ``remember`` it is kept as
        a ``[[removed]]`` entry for ``apply`` to tear down."""
        node = self.node(name)
        removed = tuple(r for r in self.removed if r.name != name)
        if remember:
            removed += (RemovedNode(node.name, node.ssh, node.endpoint, node.public_key),)
        return replace(self, nodes=tuple(n for n in self.nodes if n.name != name), removed=removed)

    def forget_removed(self, name: str) -> Inventory:
        """This inventory without the ``[[removed]]`` entry ``name``."""
        return replace(self, removed=tuple(r for r in self.removed if r.name != name))

    def listen_port(self, node: Node) -> int:
        """The UDP port ``node`` listens on."""
        return node.listen_port if node.listen_port is not None else self.mesh.port


def did_you_mean(word: str, choices: list[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``word``, else ''."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {quote(close[0])}?)" if close else ""


def unknown_node(name: str, names: list[NodeName]) -> ValidationError:
    """The error for a node name that is not in the inventory."""
    listed = ", ".join(names) if names else "none yet"
    return ValidationError(
        f"no node named {quote(name)} in the inventory{did_you_mean(name, list(names))}",
        f"nodes are: {listed}; 'wiremesh node ls' lists them",
    )


MAX_LISTED = 50
"""At most this many problems are listed in one error (a generated 10,000-node file can have more)."""


class InvalidInventory(ValidationError):
    """One or more problems found in an inventory; each names the node/key and the fix."""

    def __init__(self, problems: list[ValidationError], source: str = "inventory") -> None:
        self.problems = problems
        if len(problems) == 1:
            p = problems[0]
            super().__init__(f"{source}: {p.message}", p.hint)
        else:
            lines = [f"{source}: {len(problems)} problems"]
            for p in problems[:MAX_LISTED]:
                lines.append(f"  - {p.message}")
                if p.hint:
                    lines.append(f"    hint: {p.hint}")
            if len(problems) > MAX_LISTED:
                lines.append(f"  ... and {len(problems) - MAX_LISTED} more")
            super().__init__("\n".join(lines), None)


def check(inventory: Inventory) -> list[ValidationError]:
    """Every consistency problem of ``inventory`` (empty when it is valid).

    Single values were already validated when parsed; this checks relations between them: duplicate
    names, addresses and keys, addresses outside the mesh network, overlapping routed subnets.
    """
    problems: list[ValidationError] = []
    mesh = inventory.mesh
    problems += _check_mesh(mesh)
    for name, count in Counter(inventory.names()).items():
        if count > 1:
            problems.append(
                ValidationError(
                    f"node name {quote(name)} is used by {count} nodes",
                    "each node needs its own name: rename or remove the duplicates",
                )
            )
    names = set(inventory.names())
    for removed in inventory.removed:
        if removed.name in names:
            problems.append(
                ValidationError(
                    f"node {quote(removed.name)} is both a node and a [[removed]] entry",
                    "delete the [[removed]] entry (it tells 'apply' to tear the host down)",
                )
            )
    problems += _check_relays(inventory)
    problems += endpoint_problems(inventory)
    problems += _check_addresses(inventory)
    problems += _check_keys(inventory)
    problems += _check_allowed_ips(inventory)
    from wiremesh.model.policy.check import check_policy  # imports this module

    problems += check_policy(inventory)
    return problems


def _check_mesh(mesh: MeshSettings) -> list[ValidationError]:
    problems = network_problems(mesh.cidr, mesh.cidr6)
    if host_capacity(mesh.cidr) < 2:
        problems.append(
            ValidationError(
                f"mesh cidr {mesh.cidr} is too small for a mesh",
                "use a network with room for at least two nodes, e.g. /24",
            )
        )
    low = MTU_MIN_IPV6 if mesh.cidr6 is not None else MTU_MIN_IPV4
    if isinstance(mesh.mtu, str):
        if mesh.mtu != MTU_AUTO:
            problems.append(
                ValidationError(
                    f'mesh mtu {quote(mesh.mtu)} is not a number or "auto"',
                    'use a number such as 1420, or "auto" to derive it from each host\'s underlay',
                )
            )
    elif not low <= mesh.mtu <= MTU_MAX:
        why = " (the mesh has an IPv6 overlay)" if mesh.cidr6 is not None else ""
        problems.append(
            ValidationError(
                f"mesh mtu {mesh.mtu} is out of range{why}",
                f"use a value from {low} to {MTU_MAX}; 1420 suits a 1500-byte underlay",
            )
        )
    if not 0 <= mesh.keepalive <= 65535:
        problems.append(
            ValidationError(
                f"mesh keepalive {mesh.keepalive} is out of range",
                "use seconds from 1 to 65535, or 0 for never",
            )
        )
    return problems


def _check_relays(inventory: Inventory) -> list[ValidationError]:
    problems = []
    wanted = [("mesh", inventory.mesh.relay)] + [
        (f"node {quote(n.name)}", n.relay) for n in inventory
    ]
    for where, relay in wanted:
        if relay is None:
            continue
        node = inventory.find(relay)
        if node is None:
            problems.append(
                ValidationError(
                    f"{where}: relay {quote(relay)} is not a node"
                    + did_you_mean(relay, list(inventory.names())),
                    "name a node with a public endpoint as relay",
                )
            )
        elif node.endpoint is None:
            problems.append(
                ValidationError(
                    f"{where}: relay {quote(relay)} has no endpoint",
                    "a relay must be reachable by everyone: pick a node with an 'endpoint'",
                )
            )
    return problems


def _check_addresses(inventory: Inventory) -> list[ValidationError]:
    problems: list[ValidationError] = []
    mesh = inventory.mesh
    owner4: dict[IPv4Address, str] = {}
    owner6: dict[IPv6Address, str] = {}
    for node in inventory.nodes:
        if not is_host_address(mesh.cidr, node.address):
            problems.append(
                ValidationError(
                    f"node {quote(node.name)}: address {node.address} is not a host address of the "
                    f"mesh cidr {mesh.cidr}",
                    "remove 'address' to let wiremesh allocate one, or pick one inside the cidr "
                    "(not its network or broadcast address)",
                )
            )
        elif node.address in owner4:
            problems.append(
                ValidationError(
                    f"node {quote(node.name)}: address {node.address} is already used by node "
                    f"{quote(owner4[node.address])}",
                    "give each node its own address, or remove 'address' to allocate a free one",
                )
            )
        else:
            owner4[node.address] = node.name
        if node.address6 is None:
            continue
        if mesh.cidr6 is None:
            problems.append(
                ValidationError(
                    f"node {quote(node.name)}: address6 {node.address6} is set but the mesh has no cidr6",
                    "add 'cidr6' (an IPv6 ULA network, e.g. fd00:77::/64) to [mesh], or remove address6",
                )
            )
        elif not is_host_address(mesh.cidr6, node.address6):
            problems.append(
                ValidationError(
                    f"node {quote(node.name)}: address6 {node.address6} is not in the mesh "
                    f"cidr6 {mesh.cidr6}",
                    "remove 'address6' to let wiremesh allocate one, or pick one inside cidr6",
                )
            )
        elif node.address6 in owner6:
            problems.append(
                ValidationError(
                    f"node {quote(node.name)}: address6 {node.address6} is already used by node "
                    f"{quote(owner6[node.address6])}",
                    "give each node its own address6",
                )
            )
        else:
            owner6[node.address6] = node.name
    return problems


def _check_keys(inventory: Inventory) -> list[ValidationError]:
    problems = []
    owner: dict[PublicKey, str] = {}
    for node in inventory.nodes:
        if node.public_key is None:
            continue
        if node.public_key in owner:
            problems.append(
                ValidationError(
                    f"node {quote(node.name)}: public_key is the same as node "
                    f"{quote(owner[node.public_key])}'s",
                    "each node needs its own key pair: remove 'public_key' from one of them and "
                    "run 'wiremesh apply' (or 'render') to create a new key",
                )
            )
        else:
            owner[node.public_key] = node.name
    return problems


def _check_allowed_ips(inventory: Inventory) -> list[ValidationError]:
    problems = []
    mesh = inventory.mesh
    seen: list[tuple[IPNetwork, str]] = []
    for node in inventory.nodes:
        for net in node.allowed_ips:
            for overlay in (mesh.cidr, mesh.cidr6):
                if overlay is not None and net.version == overlay.version and net.overlaps(overlay):
                    problems.append(
                        ValidationError(
                            f"node {quote(node.name)}: allowed_ips {net} overlaps the mesh network {overlay}",
                            "mesh addresses are routed already; list only extra subnets behind the node",
                        )
                    )
            for other_net, other in seen:
                if net.version == other_net.version and net.overlaps(other_net):
                    whose = (
                        "its own entry" if other == node.name else f"that of node {quote(other)}"
                    )
                    problems.append(
                        ValidationError(
                            f"node {quote(node.name)}: allowed_ips {net} overlaps {other_net}, {whose}",
                            "a subnet can be routed to one node only: remove or narrow one of them",
                        )
                    )
            seen.append((net, node.name))
    return problems


def validate(inventory: Inventory, source: str = "inventory") -> Inventory:
    """Return ``inventory`` if :func:`check` finds nothing, else raise :class:`InvalidInventory`."""
    problems = check(inventory)
    if problems:
        raise InvalidInventory(problems, source)
    return inventory
