"""k3s on the mesh: the config file ``apply --k3s`` writes on each host, and ``wiremesh k3s config``.

The configuration itself is pure (:mod:`wiremesh.model.k3s`); this adds the file around it. Written by
``apply --k3s``, the file starts with the managed-file marker, so apply recognises it later, replaces
it when the inventory changes it, and never touches a ``config.yaml`` someone else wrote (the plan
reports that one as a note). Printed by ``k3s config``, it carries no marker: a file the user puts in
place by hand is theirs, and ``apply --k3s`` leaves it alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from wiremesh.model.host import FILE_MARKER, ManagedFile
from wiremesh.model.inventory import Inventory
from wiremesh.model.k3s import (
    CONFIG_PATH,
    DROP_IN_DIR,
    K3sConfig,
    K3sRequest,
    cluster_configs,
    node_config,
)
from wiremesh.store.inventory_file import InventoryFile

CONFIG_MODE = 0o600
"""The file names a token file at most, but k3s' own files are 0600 and so is ours."""


def _about(inventory: Inventory, config: K3sConfig) -> str:
    joins = f", joins {config.joins}" if config.joins else ""
    return f"k3s configuration of node {config.node} ({config.role}{joins}) in mesh {inventory.mesh.name}"


def managed_text(inventory: Inventory, config: K3sConfig) -> str:
    """The text ``apply --k3s`` writes: the marker, a header, the settings."""
    return config.yaml(
        (
            FILE_MARKER,
            f"{_about(inventory, config)}, written by 'wiremesh apply --k3s'.",
            f"Your own settings go in {DROP_IN_DIR}/*.yaml (read after this file, last value wins).",
        )
    )


def k3s_files(inventory: Inventory) -> dict[str, tuple[ManagedFile, ...]]:
    """The k3s config file wanted on each node's host that has a ``k3s_role``, by node name.

    Agents (and further servers) join the first server in inventory order (see
    :mod:`wiremesh.model.k3s`). Any problem with any node (an agent with no server, a node without a
    usable address...) is a :class:`~wiremesh.errors.ValidationError` raised before any host is
    touched. Nodes without a role get no file.
    """
    return {
        name: (ManagedFile(CONFIG_PATH, managed_text(inventory, config), CONFIG_MODE),)
        for name, config in cluster_configs(inventory).items()
    }


@dataclass(frozen=True)
class K3sConfigText:
    """What ``wiremesh k3s config`` prints (``text``) and says on the side (``warnings``)."""

    text: str
    warnings: tuple[str, ...]
    config: K3sConfig


def config_text(file: InventoryFile, name: str, request: K3sRequest) -> K3sConfigText:
    """The config.yaml of node ``name`` as ``wiremesh k3s config`` prints it (no managed marker)."""
    inventory = file.load()
    config = node_config(inventory, name, request)
    text = config.yaml(
        (
            f"{_about(inventory, config)}, from 'wiremesh k3s config'.",
            f"It goes to {CONFIG_PATH} on the node, mode 0600 ('wiremesh apply --k3s' puts it there).",
        )
    )
    return K3sConfigText(text, config.warnings, config)
