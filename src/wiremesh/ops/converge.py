"""``plan`` and ``apply``: from the inventory to running, converged hosts.

1. Connect to every host (in parallel, one connection each) and observe it, read-only.
2. Plan each host (pure): :func:`wiremesh.model.plan.plan_host`.
3. ``apply`` only: confirm, make missing keys on their hosts and record the public keys, plan again
   with every key known, carry out each host's plan, tear down removed nodes.

A host that fails is reported with its reason; the others go on. Running again converges the rest.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from wiremesh.model.addressing import IPAddress
from wiremesh.model.host import ObservedHost, WantedHost
from wiremesh.model.inventory import Inventory
from wiremesh.model.keys import PublicKey
from wiremesh.model.plan import Change, HostPlan, TearDown, plan_host
from wiremesh.ops.mesh import (
    RunOptions,
    effective_keys,
    open_and_observe,
    resolve_endpoints,
    select,
    ssh_options,
    ssh_target,
    wanted_hosts,
    with_keys,
)
from wiremesh.remote import hostops, scripts
from wiremesh.remote.fanout import fan_out
from wiremesh.remote.ssh import HostError, Sessions, SshOptions
from wiremesh.store.inventory_file import InventoryFile


@dataclass(frozen=True)
class HostResult:
    """One host in a plan or an apply: its plan, or why it failed, and what was done."""

    node: str
    plan: HostPlan | None = None
    error: HostError | None = None
    done: tuple[Change, ...] = ()
    removed: bool = False  # a [[removed]] node being torn down

    @property
    def failed(self) -> bool:
        """True when this host could not be read or changed."""
        return self.error is not None


@dataclass(frozen=True)
class MeshPlan:
    """The plan for every selected host."""

    hosts: tuple[HostResult, ...]
    key_updates: dict[str, PublicKey] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()  # nodes left out as peers: no key yet and host unreachable

    @property
    def empty(self) -> bool:
        """True when no host needs a change."""
        return all(h.plan is None or h.plan.empty for h in self.hosts)

    @property
    def failed(self) -> list[HostResult]:
        """Hosts that could not be read."""
        return [h for h in self.hosts if h.failed]


@dataclass(frozen=True)
class ApplyReport:
    """What ``apply`` did."""

    plan: MeshPlan
    hosts: tuple[HostResult, ...]
    applied: bool  # False when the plan was empty or not confirmed

    @property
    def failed(self) -> list[HostResult]:
        """Hosts that failed."""
        return [h for h in self.hosts if h.failed]


@dataclass
class _Context:
    inventory: Inventory
    ssh: SshOptions
    names: list[str]
    removed: list[str]
    observed: dict[str, ObservedHost | HostError]
    keys: dict[str, PublicKey | None]
    pending: frozenset[str]
    resolved: dict[str, frozenset[IPAddress]]


def _names_by_key(inventory: Inventory, keys: dict[str, PublicKey | None]) -> dict[PublicKey, str]:
    names = {k: n for n, k in keys.items() if k is not None}
    for node in inventory:
        if node.public_key is not None:
            names.setdefault(node.public_key, node.name)
    for removed in inventory.removed:
        if removed.public_key is not None:
            names.setdefault(removed.public_key, removed.name)
    return names


def _plans(ctx: _Context, wanted: dict[str, WantedHost]) -> list[HostResult]:
    interface = ctx.inventory.mesh.interface
    conf, _ = scripts.paths(interface)
    names = _names_by_key(ctx.inventory, ctx.keys)
    out: list[HostResult] = []
    for name in ctx.names:
        seen = ctx.observed[name]
        if isinstance(seen, HostError):
            out.append(HostResult(name, error=seen))
            continue
        missing = seen.missing_tools()
        if missing:
            error = HostError(name, f"missing {', '.join(missing)}", seen.os.install_hint(missing))
            out.append(HostResult(name, error=error))
            continue
        key = ctx.keys.get(name)
        view = (
            replace(seen, public_key=key) if key is not None and name not in ctx.pending else seen
        )
        planned = plan_host(name, wanted[name], view, conf, names, ctx.resolved)
        out.append(HostResult(name, planned))
    for name in ctx.removed:
        seen = ctx.observed[name]
        if isinstance(seen, HostError):
            out.append(HostResult(name, error=seen, removed=True))
            continue
        present = seen.device is not None or (seen.config is not None and seen.config.managed)
        changes: tuple[Change, ...] = (TearDown(interface),) if present else ()
        out.append(HostResult(name, HostPlan(name, changes), removed=True))
    return out


async def _observe(
    file: InventoryFile, names: list[str], options: RunOptions, sessions: Sessions
) -> _Context:
    inventory = file.load()
    selected = select(inventory, names)
    nodes: list[str] = [n for n in selected if inventory.find(n) is not None]
    removed: list[str] = [r.name for r in inventory.removed if r.name in selected]
    targets = {n: ssh_target(inventory.node(n)) for n in nodes}
    targets.update({r.name: ssh_target(r) for r in inventory.removed if r.name in removed})
    ssh = ssh_options(file, inventory, options)
    observed = await open_and_observe(sessions, targets, inventory.mesh.interface, ssh, options)
    keys = effective_keys(inventory, observed)
    pending = frozenset(
        n for n in nodes if isinstance(observed[n], ObservedHost) and keys.get(n) is None
    )
    resolved = resolve_endpoints(inventory)
    return _Context(inventory, ssh, nodes, removed, observed, keys, pending, resolved)


def _mesh_plan(ctx: _Context) -> MeshPlan:
    keyed = with_keys(ctx.inventory, ctx.keys)
    wanted = wanted_hosts(keyed, ctx.pending)
    updates: dict[str, PublicKey] = {
        n.name: k
        for n in ctx.inventory
        if (k := ctx.keys.get(n.name)) is not None and k != n.public_key
    }
    skipped = tuple(n.name for n in keyed if n.public_key is None and n.name not in ctx.pending)
    return MeshPlan(tuple(_plans(ctx, wanted)), updates, skipped)


def plan(file: InventoryFile, names: list[str], options: RunOptions) -> MeshPlan:
    """Read every selected host and plan its changes. Changes nothing anywhere."""

    async def run() -> MeshPlan:
        async with Sessions() as sessions:
            return _mesh_plan(await _observe(file, names, options, sessions))

    return asyncio.run(run())


def _record(file: InventoryFile, keys: dict[str, PublicKey], forget: list[str]) -> None:
    """Write new public keys and finished removals into the inventory (one atomic write)."""
    if not keys and not forget:
        return
    with file.edit() as edit:
        inventory = edit.inventory
        for name, key in keys.items():
            node = inventory.find(name)
            if node is not None and node.public_key != key:
                inventory = inventory.with_node(replace(node, public_key=key))
        for name in forget:
            inventory = inventory.forget_removed(name)
        edit.inventory = inventory


def apply(
    file: InventoryFile,
    names: list[str],
    options: RunOptions,
    confirm: Callable[[MeshPlan], bool],
) -> ApplyReport:
    """Plan, confirm, and carry out the plan on every selected host."""

    async def run() -> ApplyReport:
        async with Sessions() as sessions:
            ctx = await _observe(file, names, options, sessions)
            preview = _mesh_plan(ctx)
            if preview.empty and not preview.key_updates:
                return ApplyReport(preview, preview.hosts, applied=False)
            if not preview.empty and not confirm(preview):
                return ApplyReport(preview, (), applied=False)
            interface = ctx.inventory.mesh.interface

            # 1. Keys first: a peer can only be configured once its key exists.
            async def make_key(name: str) -> PublicKey:
                return await hostops.ensure_key(sessions.open[name], interface)

            made = await fan_out(
                sorted(ctx.pending),
                make_key,
                limit=options.parallel,
                progress=options.progress,
                label="creating keys",
            )
            for name, key in made.items():
                if isinstance(key, HostError):
                    ctx.observed[name] = key
                else:
                    ctx.keys[name] = key
            ctx.pending = frozenset()
            final = _mesh_plan(ctx)
            _record(file, final.key_updates, [])

            # 2. Every host's plan, in parallel.
            keyed = with_keys(ctx.inventory, ctx.keys)
            wanted = wanted_hosts(keyed)
            by_name = {h.node: h for h in final.hosts}

            async def execute(name: str) -> HostResult:
                result = by_name[name]
                assert result.plan is not None
                session = sessions.open[name]
                if result.removed:
                    outcome = (
                        await hostops.tear_down(session, interface)
                        if not result.plan.empty
                        else None
                    )
                    return replace(result, done=outcome.done if outcome else ())
                seen = ctx.observed[name]
                assert isinstance(seen, ObservedHost)
                view = replace(seen, public_key=ctx.keys.get(name))
                outcome = await hostops.execute(session, result.plan, wanted[name], view)
                return replace(result, done=outcome.done)

            todo = [h.node for h in final.hosts if h.plan is not None]
            done = await fan_out(
                todo, execute, limit=options.parallel, progress=options.progress, label="applying"
            )
            results = []
            for host in final.hosts:
                outcome = done.get(host.node)
                if isinstance(outcome, HostError):
                    results.append(replace(host, error=outcome))
                elif outcome is not None:
                    results.append(outcome)
                else:
                    results.append(host)
            finished = [h.node for h in results if h.removed and not h.failed]
            _record(file, {}, finished)
            return ApplyReport(final, tuple(results), applied=True)

    return asyncio.run(run())
