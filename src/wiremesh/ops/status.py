"""``status``: every host's interface and peers, links with fresh handshakes, optionally pings."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from wiremesh.model.endpoint import SshTarget
from wiremesh.model.health import (
    Member,
    MeshHealth,
    NodeStatus,
    PingResult,
    mesh_health,
    node_status,
    parse_ping,
)
from wiremesh.model.host import ObservedHost
from wiremesh.model.inventory import Inventory
from wiremesh.model.topology import relay_of
from wiremesh.ops.mesh import (
    RunOptions,
    effective_keys,
    open_and_observe,
    select,
    ssh_options,
    ssh_target,
)
from wiremesh.remote import scripts
from wiremesh.remote.fanout import fan_out
from wiremesh.remote.ssh import HostError, Sessions, connect
from wiremesh.store.inventory_file import InventoryFile


def mesh_status(
    inventory: Inventory,
    observed: Mapping[str, ObservedHost | HostError],
    pings: list[PingResult] | None = None,
    shown: list[str] | None = None,
) -> MeshHealth:
    """The mesh's health from what was read of each node's host (pure; an error means unreachable).
    With ``shown``, only those nodes (of a larger mesh). Shared by ``status``, ``metrics``,
    ``status --watch`` and the exporter."""
    keys = effective_keys(inventory, observed)
    members: dict[str, Member] = {
        n.name: Member(n.name, keys.get(n.name), n.address) for n in inventory
    }
    everyone = {n: (s if isinstance(s, ObservedHost) else None) for n, s in observed.items()}
    nodes: list[NodeStatus] = []
    for node in inventory:
        if shown is not None and node.name not in shown:
            continue
        seen = observed.get(node.name)
        if not isinstance(seen, ObservedHost):
            reason = seen.reason if seen is not None else "not read yet"
            nodes.append(NodeStatus(node.name, False, error=reason))
            continue
        nodes.append(
            node_status(
                node.name,
                seen,
                members,
                everyone,
                seen.config.endpoints if seen.config is not None else None,
            )
        )
    return mesh_health(nodes, pings, len(inventory.nodes) - 1)


def status(
    file: InventoryFile, options: RunOptions, ping: bool = False, names: list[str] | None = None
) -> MeshHealth:
    """Read every node's host (and with ``ping``, make every host ping every other one first).

    With ``names``, only those nodes are shown (and ping); the relays are read too, since a
    relayed link's state depends on its relay.
    """
    inventory = file.load()
    ssh = ssh_options(file, inventory, options)
    shown = [n for n in select(inventory, names or []) if inventory.find(n) is not None]
    wanted = set(shown)
    if names:  # a relayed link is judged on the relay too: read every relay
        wanted |= {r for r in (relay_of(inventory, n) for n in inventory) if r is not None}
    targets: dict[str, SshTarget] = {n.name: ssh_target(n) for n in inventory if n.name in wanted}
    pinging = {n: t for n, t in targets.items() if n in shown}

    async def run() -> MeshHealth:
        async with Sessions() as sessions:
            results: list[PingResult] | None = None
            if ping:
                addresses = {str(n.address): n.name for n in inventory}
                addresses.update({str(n.address6): n.name for n in inventory if n.address6})

                order: dict[str, int] = {n.name: i for i, n in enumerate(inventory)}

                async def warm_up(name: str) -> None:
                    # Start sessions from one end of each pair first. When both ends send their
                    # first packet at once, their handshake initiations cross: each side answers the
                    # other's and drops the answer to its own, both wait as responders, and the
                    # pings' lockstep repeats that at every 5 s retry (seen in the lab: 9 pairs in 10
                    # without a session after 3 s when started from both ends, 0 from one end).
                    session = await connect(name, targets[name], ssh)
                    sessions.open[name] = session
                    later = [a for a, owner in addresses.items() if order[owner] > order[name]]
                    if later:
                        script = scripts.ping_all(later, count=1, deadline=2)
                        await session.run(script, step="starting sessions")

                async def pings(name: str) -> list[PingResult]:
                    session = sessions.open[name]
                    others = [a for a, owner in addresses.items() if owner != name]
                    result = await session.run(scripts.ping_all(others), step="pinging the mesh")
                    return parse_ping(name, addresses, result.stdout)

                warmed = await fan_out(
                    pinging,
                    warm_up,
                    limit=options.parallel,
                    progress=options.progress,
                    label="starting sessions",
                )
                reachable = [n for n, v in warmed.items() if not isinstance(v, HostError)]
                done: dict[str, list[PingResult] | HostError] = {
                    n: v for n, v in warmed.items() if isinstance(v, HostError)
                }
                done |= await fan_out(
                    reachable,
                    pings,
                    limit=options.parallel,
                    progress=options.progress,
                    label="pinging",
                )
                results = []
                for name, value in done.items():
                    if isinstance(value, HostError):
                        others = [(a, o) for a, o in addresses.items() if o != name]
                        results += [PingResult(name, o, a, 0, 0, None) for a, o in others]
                    else:
                        results += value
            observed = await open_and_observe(
                sessions, targets, inventory, ssh, options, full=False
            )
        return mesh_status(inventory, observed, results, shown)

    return asyncio.run(run())
