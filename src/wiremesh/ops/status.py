"""``status``: every host's interface and peers, links with fresh handshakes, optionally pings."""

from __future__ import annotations

import asyncio

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
from wiremesh.ops.mesh import RunOptions, effective_keys, open_and_observe, ssh_options, ssh_target
from wiremesh.remote import scripts
from wiremesh.remote.fanout import fan_out
from wiremesh.remote.ssh import HostError, Sessions, connect
from wiremesh.store.inventory_file import InventoryFile


def status(file: InventoryFile, options: RunOptions, ping: bool = False) -> MeshHealth:
    """Read every node's host (and with ``ping``, make every host ping every other one first)."""
    inventory = file.load()
    ssh = ssh_options(file, inventory, options)
    targets: dict[str, SshTarget] = {n.name: ssh_target(n) for n in inventory}

    async def run() -> MeshHealth:
        async with Sessions() as sessions:
            results: list[PingResult] | None = None
            if ping:
                addresses = {str(n.address): n.name for n in inventory}
                addresses.update({str(n.address6): n.name for n in inventory if n.address6})

                async def pings(name: str) -> list[PingResult]:
                    session = await connect(name, targets[name], ssh)
                    sessions.open[name] = session
                    others = [a for a, owner in addresses.items() if owner != name]
                    result = await session.run(scripts.ping_all(others), step="pinging the mesh")
                    return parse_ping(name, addresses, result.stdout)

                done = await fan_out(
                    targets,
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
            observed = await open_and_observe(sessions, targets, inventory, ssh, options)
        keys = effective_keys(inventory, observed)
        members: dict[str, Member] = {
            n.name: Member(n.name, keys.get(n.name), n.address) for n in inventory
        }
        everyone = {n: (s if isinstance(s, ObservedHost) else None) for n, s in observed.items()}
        nodes: list[NodeStatus] = []
        for node in inventory:
            seen = observed[node.name]
            if isinstance(seen, HostError):
                nodes.append(NodeStatus(node.name, False, error=seen.reason))
                continue
            nodes.append(node_status(node.name, seen, members, everyone))
        return mesh_health(nodes, results)

    return asyncio.run(run())
