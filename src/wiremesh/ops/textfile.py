"""``[metrics] textfile = true``: the managed files apply puts on every host for node_exporter's
textfile collector (the script, its service and timer), or, when the setting is off, the same paths
as files that must not be there (so that turning it off removes them; see
:class:`~wiremesh.model.host.ManagedFile`). The texts come from :mod:`wiremesh.remote.textfile`.
"""

from __future__ import annotations

from wiremesh.model.host import ManagedFile
from wiremesh.model.inventory import Inventory, Node
from wiremesh.remote.textfile import (
    Target,
    TextfilePaths,
    activate,
    collector_script,
    deactivate,
    service_unit,
    timer_unit,
)

SCRIPT_MODE = 0o755  # no secret in it; readable so that it can be reviewed on the host
UNIT_MODE = 0o644  # systemd warns about unit files that are not world-readable


def _wanted(inventory: Inventory, node: Node) -> tuple[ManagedFile, ...]:
    settings = inventory.metrics
    interface = inventory.mesh.interface
    paths = TextfilePaths.of(interface, settings.directory)
    targets = [Target(n.name, n.address) for n in inventory if n.name != node.name]
    script = collector_script(
        node.name, inventory.mesh.name, interface, targets, settings.directory
    )
    on = activate(interface, paths.script)
    return (
        ManagedFile(paths.script, script, SCRIPT_MODE, activate=on),
        ManagedFile(paths.service, service_unit(interface, paths.script), UNIT_MODE, activate=on),
        ManagedFile(paths.timer, timer_unit(interface, settings.interval), UNIT_MODE, activate=on),
    )


def retired_files(inventory: Inventory) -> tuple[ManagedFile, ...]:
    """The collector's files as files that must not be there (removed if found and ours)."""
    interface = inventory.mesh.interface
    paths = TextfilePaths.of(interface, inventory.metrics.directory)
    off = deactivate(interface, paths.output)
    return tuple(
        ManagedFile(path, "", present=False, deactivate=off)
        for path in (paths.timer, paths.service, paths.script)
    )


def textfile_files(inventory: Inventory) -> dict[str, tuple[ManagedFile, ...]]:
    """By node name: the collector's files when ``[metrics] textfile`` is on, else their removal."""
    if not inventory.metrics.textfile:
        retired = retired_files(inventory)
        return {n.name: retired for n in inventory}
    return {n.name: _wanted(inventory, n) for n in inventory}
