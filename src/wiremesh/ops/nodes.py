"""Use cases that edit the inventory: ``init`` and ``node add/set/rm/ls``.

They take validated values (the CLI parses options at the edge) and return values; they never print.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address
from typing import Any

from wiremesh.errors import ValidationError, quote
from wiremesh.model.addressing import IPNetwork, allocate
from wiremesh.model.endpoint import Endpoint, SshTarget
from wiremesh.model.inventory import Inventory, MeshSettings, Node, unknown_node
from wiremesh.model.names import NodeName
from wiremesh.store.inventory_file import InventoryFile
from wiremesh.store.keydir import KeyDir


def init(file: InventoryFile, mesh: MeshSettings) -> Inventory:
    """Create a new inventory with no nodes."""
    inventory = Inventory(mesh)
    file.create(inventory)
    return inventory


@dataclass(frozen=True)
class NodeFields:
    """Node settings given on the command line; None means "not given"."""

    address: IPv4Address | None = None
    address6: IPv6Address | None = None
    endpoint: Endpoint | None = None
    ssh: SshTarget | None = None
    site: str | None = None
    private_endpoint: Endpoint | None = None
    listen_port: int | None = None
    allowed_ips: tuple[IPNetwork, ...] | None = None
    relay: NodeName | None = None
    k3s_role: str | None = None
    clear: frozenset[str] = field(default_factory=frozenset)

    def given(self) -> dict[str, Any]:
        """The settings that were given, by field name."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name != "clear" and getattr(self, f.name) is not None
        }


CLEARABLE = (
    "address6",
    "endpoint",
    "ssh",
    "site",
    "private_endpoint",
    "listen_port",
    "allowed_ips",
    "relay",
    "k3s_role",
)
MESH_SETTABLE = ("mtu", "keepalive", "ssh_config", "relay")


def set_mesh(
    file: InventoryFile, changes: dict[str, Any], clear: frozenset[str]
) -> tuple[MeshSettings, MeshSettings]:
    """Change mesh settings (``mesh set``); cleared keys go back to their defaults. Returns
    (before, after); asking for no change at all is a usage error."""
    if not changes and not clear:
        raise ValidationError(
            "mesh set: nothing to change",
            f"give a setting (--mtu, --keepalive, --relay, --ssh-config-file) or --clear KEY "
            f"(one of {', '.join(MESH_SETTABLE)})",
        )
    defaults = MeshSettings(cidr=IPv4Network("10.0.0.0/24"))
    with file.edit() as edit:
        before = edit.inventory.mesh
        values = {key: getattr(defaults, key) for key in clear}
        values.update(changes)
        mesh = replace(before, **values)
        edit.inventory = replace(edit.inventory, mesh=mesh)
        return before, mesh


def add_node(file: InventoryFile, name: NodeName, settings: NodeFields) -> Node:
    """Add a node; without an address it gets the lowest free one. Existing nodes keep theirs."""
    with file.edit() as edit:
        inventory = edit.inventory
        if inventory.find(name) is not None:
            raise ValidationError(
                f"a node named {quote(name)} already exists",
                f"pick another name, or change it with 'wiremesh node set {name} ...'",
            )
        values = settings.given()
        if "address" not in values:
            values["address"] = allocate(inventory.mesh.cidr, (n.address for n in inventory))
        if inventory.mesh.cidr6 is not None and "address6" not in values:
            values["address6"] = allocate(
                inventory.mesh.cidr6,
                (n.address6 for n in inventory if n.address6 is not None),
                "mesh IPv6",
            )
        node = Node(name=name, **values)
        # A node of this name that was removed but not torn down yet is simply reconfigured.
        edit.inventory = inventory.forget_removed(name).with_node(node)
        return node


def set_node(file: InventoryFile, name: str, settings: NodeFields) -> tuple[Node, Node]:
    """Change settings of a node; returns (before, after)."""
    for key in settings.clear:
        if key not in CLEARABLE:
            raise ValidationError(
                f"cannot clear {quote(key)}", f"keys that can be cleared: {', '.join(CLEARABLE)}"
            )
    with file.edit() as edit:
        before = edit.inventory.node(name)
        changes: dict[str, Any] = {key: None for key in settings.clear}
        if "allowed_ips" in settings.clear:
            changes["allowed_ips"] = ()
        changes.update(settings.given())
        after = replace(before, **changes)
        edit.inventory = edit.inventory.with_node(after)
        return before, after


@dataclass(frozen=True)
class Removal:
    """What ``node rm`` did."""

    name: str
    pending: bool  # kept as [[removed]] for apply to tear down
    forgotten: bool  # an earlier [[removed]] entry was dropped


def remove_node(file: InventoryFile, name: str, forget: bool = False) -> Removal:
    """Remove a node. If it may run somewhere (it has a key), it stays as a ``[[removed]]`` entry
    until ``apply`` has taken it out of its host; ``forget`` skips that (and drops such an entry)."""
    with file.edit() as edit:
        inventory = edit.inventory
        if inventory.find(name) is None and forget:
            if not any(r.name == name for r in inventory.removed):
                raise unknown_node(name, inventory.names())
            edit.inventory = inventory.forget_removed(name)
            return Removal(name, pending=False, forgotten=True)
        node = inventory.node(name)
        pending = node.public_key is not None and not forget
        edit.inventory = inventory.without(name, remember=pending)
    KeyDir.beside(file.path).remove(name)
    return Removal(name, pending=pending, forgotten=False)


def node_record(inventory: Inventory, node: Node) -> dict[str, Any]:
    """A node as a JSON-ready dict (the ``node ls --json`` schema)."""
    return {
        "name": node.name,
        "address": str(node.address),
        "address6": str(node.address6) if node.address6 else None,
        "endpoint": str(node.endpoint) if node.endpoint else None,
        "listen_port": inventory.listen_port(node),
        "ssh": str(node.ssh) if node.ssh else None,
        "site": node.site,
        "private_endpoint": str(node.private_endpoint) if node.private_endpoint else None,
        "allowed_ips": [str(n) for n in node.allowed_ips],
        "relay": node.relay,
        "k3s_role": node.k3s_role,
        "public_key": str(node.public_key) if node.public_key else None,
    }
