"""``plan`` and ``apply``: from the inventory to running, converged hosts.

1. Read and plan every host (:mod:`wiremesh.ops.planning`).
2. ``apply`` only: confirm, refuse hosts whose networks overlap the mesh (unless forced), make missing
   keys on their hosts and record the public keys, plan again with every key known, carry out each
   host's plan, tear down removed nodes.
3. Where nodes behind NAT must find each other, a few short follow-up rounds observe again and apply
   what was learnt (their public addresses, then whether the direct path works).

A host that fails is reported with its reason; the others go on. Running again converges the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from wiremesh.errors import ValidationError
from wiremesh.model.changes import Change, CreateKey
from wiremesh.model.facts import derive_facts, nat_pairs
from wiremesh.model.host import ObservedHost
from wiremesh.model.keys import PublicKey
from wiremesh.model.live import switch_together
from wiremesh.model.plan import AddPeer, UpdatePeer
from wiremesh.model.topology import relay_of
from wiremesh.ops.mesh import (
    RunOptions,
    open_and_observe,
)
from wiremesh.ops.planning import (
    Context,
    HostResult,
    MeshPlan,
    mesh_plan,
    observe_mesh,
)
from wiremesh.ops.textfile import retired_files
from wiremesh.remote import hostops
from wiremesh.remote.fanout import fan_out
from wiremesh.remote.firewallops import confirm_guard
from wiremesh.remote.ssh import HostError, Sessions
from wiremesh.store.inventory_file import InventoryFile

FOLLOW_UP_ROUNDS = 2
# How long a follow-up round waits at most for NAT nodes' first handshakes. A NAT node's first
# initiation is lost when it reaches a public peer that is not configured yet (all hosts change at
# once), and WireGuard retries only after REKEY_TIMEOUT (5 s, plus up to 1/3 s of jitter): the wait
# covers one retry and the time to read the hosts again.
SETTLE_S = 7.0
PROBE_S = 2.0  # how long it waits at most for a direct handshake between two NAT nodes
POLL_S = 0.5
SWITCH_DELAY_S = 0.5  # how far ahead the instant lies at which both ends of a NAT pair switch paths


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
    """Stop before any change when a host's interface belongs to another mesh, or its own networks
    overlap the mesh (``--force`` skips this)."""
    found = mesh.conflicts
    if not found:
        return
    lines = [f"{h.node}: {c}" for h in found for c in (h.plan.conflicts if h.plan else ())]
    hints = []
    if any("belongs to mesh" in line for line in lines):
        hints.append(
            "another mesh runs on that interface: give this mesh its own ([mesh] interface = "
            '"wg1"), or take the other mesh off the host first'
        )
    if any("overlaps" in line for line in lines):
        hints.append(
            "pick another mesh cidr (wiremesh init --cidr / edit [mesh] cidr) or remove the "
            "overlapping route"
        )
    raise ValidationError(
        "apply would take over or collide with what is already on hosts; nothing was changed:\n  "
        + "\n  ".join(lines),
        "; ".join([*hints, "run apply --force if this is intended"]),
    )


async def execute_plan(
    ctx: Context, mesh: MeshPlan, sessions: Sessions, options: RunOptions, label: str
) -> list[HostResult]:
    """Carry out every host's plan in parallel (``mesh`` planned with every key known); failed hosts
    keep their error.

    Nodes without an endpoint (behind NAT) go in a second wave, once the others are done. Only they
    start their handshakes (nobody knows where they are), and an initiation that reaches a peer
    which does not know their key yet is dropped and retried by WireGuard only after 5 s: with two
    waves, a new NAT node's first handshakes succeed, and so do every NAT node's with a new node."""
    interface = ctx.inventory.mesh.interface
    mesh_name = ctx.inventory.mesh.name
    wanted = mesh.wanted
    by_name = {h.node: h for h in mesh.hosts}
    plans = {h.node: h.plan.changes for h in mesh.hosts if h.plan is not None and not h.removed}
    pairs = [(a.name, b.name) for a, b in nat_pairs(ctx.inventory)]
    together = switch_together(plans, pairs)
    instant: dict[str, float] = {}  # when the hosts of `together` switch paths, set per wave

    async def execute(name: str) -> HostResult:
        result = by_name[name]
        assert result.plan is not None
        session = sessions.open[name]
        if result.removed:
            if result.plan.empty:
                return result
            outcome = await hostops.tear_down(
                session, interface, mesh_name, retired_files(ctx.inventory)
            )
            return replace(result, done=outcome.done)
        seen = ctx.observed[name]
        assert isinstance(seen, ObservedHost)
        view = replace(seen, public_key=ctx.keys.get(name))
        outcome = await hostops.execute(
            session,
            result.plan,
            wanted[name],
            view,
            mesh_name,
            options.live_method,
            instant.get(name),
            options.confirm_timeout,
        )
        return replace(result, done=outcome.done, guard=outcome.guard)

    todo = [h.node for h in mesh.hosts if h.plan is not None and not h.plan.empty]
    behind = {n.name for n in ctx.inventory if n.endpoint is None}
    waves = (
        ([n for n in todo if n not in behind], label),
        ([n for n in todo if n in behind], f"{label} (nodes behind NAT)"),
    )
    done: dict[str, HostResult | HostError] = {}
    for wave, wave_label in waves:
        if not wave:
            continue
        at = time.time() + SWITCH_DELAY_S
        instant.update({n: at for n in together & set(wave)})
        done |= await fan_out(
            wave, execute, limit=options.parallel, progress=options.progress, label=wave_label
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
    ctx: Context, sessions: Sessions, options: RunOptions, names: list[str]
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
    ctx: Context, sessions: Sessions, options: RunOptions, results: list[HostResult]
) -> tuple[list[HostResult], int]:
    """Rounds for NAT pairs: learn their public addresses, then whether the direct path works.

    A round waits only for what the previous one started: a NAT node's first handshakes with public
    peers (at most :data:`SETTLE_S`), or handshakes on a newly set direct path (at most
    :data:`PROBE_S`). The pair's traffic already flows through the relay meanwhile, so a direct path
    that needs longer (a lost initiation is retried after 5 s) is simply taken by a later apply.
    """
    pairs = nat_pairs(ctx.inventory)
    involved: set[str] = {n for a, b in pairs for n in (a.name, b.name)}
    if not involved:
        return results, 1
    rounds = 1
    merged = {h.node: h for h in results}
    probing = _probes_changed(results, involved)
    # Only NAT nodes and the nodes that see them (their relays; every public node when one of them
    # has no relay) are read again and changed: nothing else depends on what these rounds learn.
    relays = {relay_of(ctx.inventory, ctx.inventory.node(n)) for n in involved}
    witnesses = involved | {r for r in relays if r is not None}
    if None in relays:
        witnesses |= {n.name for n in ctx.inventory if n.endpoint is not None}
    for _ in range(FOLLOW_UP_ROUNDS):
        names = [
            n for n in ctx.names if n in witnesses and n in sessions.open and not merged[n].failed
        ]
        alive = involved & set(names)
        learning = any(n not in ctx.facts.learnt for n in alive)
        if not (learning or probing):
            break
        deadline = time.monotonic() + (SETTLE_S if learning else PROBE_S)
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
        subset = replace(ctx, names=names, removed=[])
        mesh = mesh_plan(subset)
        if mesh.empty:
            if learning and not learnt:
                continue  # nothing to do until the rest is learnt: wait once more
            break
        rounds += 1
        executed = await execute_plan(subset, mesh, sessions, options, "applying (NAT paths)")
        for host in executed:
            before = merged.get(host.node)
            done = (before.done if before else ()) + host.done
            error = host.error or (before.error if before else None)
            merged[host.node] = replace(host, done=done, error=error)
        probing = _probes_changed(executed, involved)
    return [merged[h.node] for h in results], rounds


async def confirm_guards(
    ctx: Context, mesh: MeshPlan, options: RunOptions, results: list[HostResult]
) -> list[HostResult]:
    """Confirm every guard change over a *new* SSH connection per host (the proof that SSH still
    works); a host that cannot be logged in to again undoes the change by itself."""
    pending = {h.node: h.guard for h in results if h.guard is not None and not h.failed}
    if not pending:
        return results
    interface = ctx.inventory.mesh.interface

    async def confirm(name: str) -> None:
        firewall = mesh.wanted[name].firewall
        guard = pending[name]
        assert firewall is not None and guard is not None
        await confirm_guard(name, ctx.targets[name], ctx.ssh, interface, firewall, guard)

    done = await fan_out(
        list(pending),
        confirm,
        limit=options.parallel,
        progress=options.progress,
        label="confirming guard changes",
    )
    return [
        replace(h, error=done[h.node], guard=None)
        if isinstance(done.get(h.node), HostError)
        else replace(h, guard=None)
        for h in results
    ]


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
            ctx = await observe_mesh(file, names, options, sessions, lock="apply")
            preview = mesh_plan(ctx)
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
                sorted(ctx.pending | ctx.keyless),
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
            final = mesh_plan(ctx)
            _record(file, final.key_updates, [])
            # The keys made above are changes of the plan the user saw: report them as done, so
            # that apply counts what plan counted.
            made_ok = {n for n, key in made.items() if not isinstance(key, HostError)}
            keys_made: dict[str, tuple[Change, ...]] = {
                h.node: tuple(h.plan.of(CreateKey))
                for h in preview.hosts
                if h.plan is not None and h.node in made_ok
            }

            # 2. Every host's plan, in parallel; then NAT follow-up rounds where needed.
            results = await execute_plan(ctx, final, sessions, options, "applying")
            results = [replace(h, done=keys_made.get(h.node, ()) + h.done) for h in results]
            results, rounds = await _follow_up(ctx, sessions, options, results)
            results = await confirm_guards(ctx, final, options, results)
            finished = [h.node for h in results if h.removed and not h.failed]
            _record(file, {}, finished)
            return ApplyReport(final, tuple(results), applied=True, rounds=rounds)

    return asyncio.run(run())
