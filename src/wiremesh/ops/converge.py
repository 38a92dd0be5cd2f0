"""``plan`` and ``apply``: from the inventory to running, converged hosts.

1. Connect to every host (in parallel, one connection each) and observe it, read-only.
2. Derive facts from the observations (NAT endpoints, working direct paths, underlay MTUs) and plan
   each host (pure): :func:`wiremesh.model.plan.plan_host`.
3. ``apply`` only: confirm, refuse hosts whose networks overlap the mesh (unless forced), make missing
   keys on their hosts and record the public keys, plan again with every key known, carry out each
   host's plan, tear down removed nodes.
4. Where nodes behind NAT must find each other, a few short follow-up rounds observe again and apply
   what was learnt (their public addresses, then whether the direct path works).

A host that fails is reported with its reason; the others go on. Running again converges the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from wiremesh.errors import ValidationError
from wiremesh.model.addressing import IPAddress
from wiremesh.model.endpoint import SshTarget
from wiremesh.model.facts import derive_facts, nat_pairs
from wiremesh.model.host import ManagedFile, ObservedHost, WantedHost
from wiremesh.model.inventory import Inventory
from wiremesh.model.keys import PublicKey
from wiremesh.model.plan import AddPeer, Change, HostPlan, TearDown, UpdatePeer, plan_host
from wiremesh.model.topology import NO_FACTS, Facts
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

FOLLOW_UP_ROUNDS = 2
SETTLE_S = 5.0  # how long a follow-up round waits for NAT handshakes at most
POLL_S = 0.5


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

    @property
    def conflicts(self) -> list[HostResult]:
        """Hosts with networks that overlap the mesh."""
        return [h for h in self.hosts if h.plan is not None and h.plan.conflicts]


@dataclass(frozen=True)
class ApplyReport:
    """What ``apply`` did."""

    plan: MeshPlan
    hosts: tuple[HostResult, ...]
    applied: bool  # False when the plan was empty or not confirmed
    rounds: int = 1

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
    targets: dict[str, SshTarget]
    observed: dict[str, ObservedHost | HostError]
    keys: dict[str, PublicKey | None]
    pending: frozenset[str]
    resolved: dict[str, frozenset[IPAddress]]
    facts: Facts = NO_FACTS
    files: Mapping[str, tuple[ManagedFile, ...]] = field(default_factory=dict)

    def reachable(self) -> dict[str, ObservedHost]:
        """The hosts observed without error."""
        return {n: s for n, s in self.observed.items() if isinstance(s, ObservedHost)}


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
        present = present or seen.hosts_block is not None
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
    files = options.extra_files(inventory) if options.extra_files else {}
    observed = await open_and_observe(sessions, targets, inventory, ssh, options, files=files)
    keys = effective_keys(inventory, observed)
    pending = frozenset(
        n for n in nodes if isinstance(observed[n], ObservedHost) and keys.get(n) is None
    )
    ctx = _Context(
        inventory,
        ssh,
        nodes,
        removed,
        targets,
        observed,
        keys,
        pending,
        resolve_endpoints(inventory),
    )
    ctx.facts = derive_facts(inventory, keys, ctx.reachable())
    ctx.files = files
    return ctx


def _mesh_plan(ctx: _Context) -> MeshPlan:
    keyed = with_keys(ctx.inventory, ctx.keys)
    wanted = wanted_hosts(keyed, ctx.pending, ctx.facts, ctx.files)
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
        nodes = tuple(
            replace(n, public_key=keys[n.name])
            if n.name in keys and n.public_key != keys[n.name]
            else n
            for n in inventory.nodes
        )
        inventory = replace(inventory, nodes=nodes)
        for name in forget:
            inventory = inventory.forget_removed(name)
        edit.inventory = inventory


def refuse_conflicts(mesh: MeshPlan) -> None:
    """Stop before any change when a host's own networks overlap the mesh (``--force`` skips this)."""
    found = mesh.conflicts
    if not found:
        return
    lines = [f"{h.node}: {c}" for h in found for c in (h.plan.conflicts if h.plan else ())]
    raise ValidationError(
        "the mesh network overlaps networks already on hosts; nothing was changed:\n  "
        + "\n  ".join(lines),
        "pick another mesh cidr (wiremesh init --cidr / edit [mesh] cidr), remove the overlapping "
        "route, or run apply --force if the overlap is intended",
    )


async def _execute(
    ctx: _Context, mesh: MeshPlan, sessions: Sessions, options: RunOptions, label: str
) -> list[HostResult]:
    """Carry out every host's plan in parallel; failed hosts keep their error."""
    interface = ctx.inventory.mesh.interface
    mesh_name = ctx.inventory.mesh.name
    wanted = wanted_hosts(with_keys(ctx.inventory, ctx.keys), frozenset(), ctx.facts, ctx.files)
    by_name = {h.node: h for h in mesh.hosts}

    async def execute(name: str) -> HostResult:
        result = by_name[name]
        assert result.plan is not None
        session = sessions.open[name]
        if result.removed:
            if result.plan.empty:
                return result
            outcome = await hostops.tear_down(session, interface, mesh_name)
            return replace(result, done=outcome.done)
        seen = ctx.observed[name]
        assert isinstance(seen, ObservedHost)
        view = replace(seen, public_key=ctx.keys.get(name))
        outcome = await hostops.execute(session, result.plan, wanted[name], view, mesh_name)
        return replace(result, done=outcome.done)

    todo = [h.node for h in mesh.hosts if h.plan is not None and not h.plan.empty]
    done = await fan_out(
        todo, execute, limit=options.parallel, progress=options.progress, label=label
    )
    results = []
    for host in mesh.hosts:
        outcome = done.get(host.node)
        if isinstance(outcome, HostError):
            results.append(replace(host, error=outcome))
        elif outcome is not None:
            results.append(outcome)
        else:
            results.append(host)
    return results


async def _reobserve(
    ctx: _Context, sessions: Sessions, options: RunOptions, names: list[str]
) -> None:
    """Observe ``names`` again (their sessions are open) and refresh the facts."""
    targets = {n: ctx.targets[n] for n in names if n in sessions.open}
    fresh = await open_and_observe(
        sessions,
        targets,
        ctx.inventory,
        ctx.ssh,
        options,
        "reading hosts again",
        ctx.facts.learnt,
        ctx.files,
    )
    ctx.observed.update(fresh)
    ctx.facts = derive_facts(ctx.inventory, ctx.keys, ctx.reachable())


def _probes_changed(results: list[HostResult], involved: set[str]) -> bool:
    """True when a round gave a NAT node a new endpoint for another NAT node (a direct path to try)."""
    for host in results:
        if host.node not in involved:
            continue
        for change in host.done:
            if (
                isinstance(change, UpdatePeer)
                and change.setting == "endpoint"
                and change.name in involved
            ):
                return True
            if (
                isinstance(change, AddPeer)
                and change.endpoint is not None
                and change.name in involved
            ):
                return True
    return False


async def _follow_up(
    ctx: _Context, sessions: Sessions, options: RunOptions, results: list[HostResult]
) -> tuple[list[HostResult], int]:
    """Rounds for NAT pairs: learn their public addresses, then whether the direct path works.

    A round waits (at most :data:`SETTLE_S`) only for what the previous one started: a NAT node's
    first handshakes with public peers, or handshakes on a newly set direct path.
    """
    pairs = nat_pairs(ctx.inventory)
    involved: set[str] = {n for a, b in pairs for n in (a.name, b.name)}
    if not involved:
        return results, 1
    rounds = 1
    merged = {h.node: h for h in results}
    probing = _probes_changed(results, involved)
    for _ in range(FOLLOW_UP_ROUNDS):
        names = [n for n in ctx.names if n in sessions.open and not merged[n].failed]
        alive = involved & set(names)
        learning = any(n not in ctx.facts.learnt for n in alive)
        if not (learning or probing):
            break
        deadline = time.monotonic() + SETTLE_S
        while True:  # wait (briefly) for keepalive handshakes to show what the NATs do
            await _reobserve(ctx, sessions, options, names)
            learnt = all(n in ctx.facts.learnt for n in alive)
            direct = all(
                frozenset((a.name, b.name)) in ctx.facts.direct
                for a, b in pairs
                if a.name in ctx.facts.learnt and b.name in ctx.facts.learnt
            )
            if (not learning or learnt) and (not probing or direct):
                break
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(POLL_S)
        mesh = _mesh_plan(ctx)
        if mesh.empty:
            break
        rounds += 1
        executed = await _execute(ctx, mesh, sessions, options, "applying (NAT paths)")
        for host in executed:
            before = merged.get(host.node)
            done = (before.done if before else ()) + host.done
            error = host.error or (before.error if before else None)
            merged[host.node] = replace(host, done=done, error=error)
        probing = _probes_changed(executed, involved)
    return [merged[h.node] for h in results], rounds


def apply(
    file: InventoryFile,
    names: list[str],
    options: RunOptions,
    confirm: Callable[[MeshPlan], bool],
    force: bool = False,
) -> ApplyReport:
    """Plan, confirm, and carry out the plan on every selected host."""

    async def run() -> ApplyReport:
        async with Sessions() as sessions:
            ctx = await _observe(file, names, options, sessions)
            preview = _mesh_plan(ctx)
            if not force:
                refuse_conflicts(preview)
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

            # 2. Every host's plan, in parallel; then NAT follow-up rounds where needed.
            results = await _execute(ctx, final, sessions, options, "applying")
            results, rounds = await _follow_up(ctx, sessions, options, results)
            finished = [h.node for h in results if h.removed and not h.failed]
            _record(file, {}, finished)
            return ApplyReport(final, tuple(results), applied=True, rounds=rounds)

    return asyncio.run(run())
