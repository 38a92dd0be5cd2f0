"""Reading the hosts and planning every one of them: the read-only half of ``plan`` and ``apply``.

1. Connect to every host (in parallel, one connection each) and observe it, read-only.
2. Derive facts from the observations (NAT endpoints, working direct paths, underlay MTUs) and plan
   each host (pure): :func:`wiremesh.model.plan.plan_host`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from wiremesh.codec.nftables import boot_diff
from wiremesh.errors import ValidationError
from wiremesh.model.addressing import IPAddress
from wiremesh.model.changes import Change, HostPlan, TearDown
from wiremesh.model.endpoint import SshTarget
from wiremesh.model.facts import derive_facts
from wiremesh.model.firewall import confirm_needed, firewall_changes
from wiremesh.model.host import ManagedFile, ObservedHost, WantedHost
from wiremesh.model.inventory import Inventory
from wiremesh.model.keys import PublicKey
from wiremesh.model.plan import plan_host
from wiremesh.model.policy.compile import ssh_guard_conflict
from wiremesh.model.policy.evaluate import failing
from wiremesh.model.policy.resolve import ResolvedPolicy, resolve
from wiremesh.model.topology import NO_FACTS, Facts
from wiremesh.ops.mesh import (
    RunOptions,
    connect_and_lock,
    effective_keys,
    open_and_observe,
    resolve_endpoints,
    select,
    ssh_options,
    ssh_target,
    wanted_hosts,
    with_keys,
)
from wiremesh.ops.textfile import textfile_files
from wiremesh.remote import nft, scripts
from wiremesh.remote.firewallops import PendingGuard
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
    guard: PendingGuard | None = None  # a guard change the host keeps only if apply confirms it

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
    # What each host should hold, as planned: apply carries out exactly this, without deriving it again.
    wanted: dict[str, WantedHost] = field(default_factory=dict, repr=False, compare=False)

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


@dataclass
class Context:
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
    keyless: frozenset[str] = frozenset()  # reachable hosts without a key file
    policy: ResolvedPolicy | None = None  # the access policy, resolved against the inventory

    def reachable(self) -> dict[str, ObservedHost]:
        """The hosts observed without error."""
        return {n: s for n, s in self.observed.items() if isinstance(s, ObservedHost)}


def check_policy_tests(inventory: Inventory) -> ResolvedPolicy | None:
    """The resolved policy; raise :class:`ValidationError` (before any host is contacted) when one
    of its tests fails, naming each test and the rule that decided."""
    resolved = resolve(inventory)
    if resolved is None:
        return None
    failures = failing(resolved)
    if failures:
        raise ValidationError(
            f"{len(failures)} policy test(s) fail; nothing was changed:\n  "
            + "\n  ".join(f.describe() for f in failures),
            "fix the rule that decided, or the test's expectation ([policy] tests); "
            "'wiremesh policy check' shows every test",
        )
    return resolved


def _names_by_key(inventory: Inventory, keys: dict[str, PublicKey | None]) -> dict[PublicKey, str]:
    names = {k: n for n, k in keys.items() if k is not None}
    for node in inventory:
        if node.public_key is not None:
            names.setdefault(node.public_key, node.name)
    for removed in inventory.removed:
        if removed.public_key is not None:
            names.setdefault(removed.public_key, removed.name)
    return names


def _with_firewall(
    ctx: Context, plan: HostPlan, wanted: WantedHost, seen: ObservedHost
) -> HostPlan:
    """The host plan with its firewall changes and notes (:mod:`wiremesh.model.firewall`), and a
    guard that would cut SSH off as a conflict (refused unless ``--force``)."""
    state = seen.firewall
    boot = nft.boot_file(ctx.inventory.mesh.interface)
    boot_changes = boot_diff(wanted.firewall, state.boot_sha256, boot) if state else []
    changes, notes = firewall_changes(wanted.firewall, state, boot_changes)
    found = list(plan.conflicts)
    resolved = ctx.policy
    node = ctx.inventory.find(plan.node)
    if resolved is not None and node is not None and confirm_needed(changes):
        why = ssh_guard_conflict(resolved, node)
        if why is not None:
            found.append(why)
    if not (changes or notes or found != list(plan.conflicts)):
        return plan
    return replace(
        plan,
        changes=plan.changes + tuple(changes),
        notes=plan.notes + tuple(notes),
        conflicts=tuple(found),
    )


def host_plans(ctx: Context, wanted: dict[str, WantedHost]) -> list[HostResult]:
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
        firewall = wanted[name].firewall
        if firewall is not None and seen.firewall is not None and not seen.firewall.nft:
            missing.append("nft")  # the policy needs nftables there
        if missing:
            error = HostError(name, f"missing {', '.join(missing)}", seen.os.install_hint(missing))
            out.append(HostResult(name, error=error))
            continue
        key = ctx.keys.get(name)
        view = (
            replace(seen, public_key=key) if key is not None and name not in ctx.pending else seen
        )
        planned = plan_host(name, wanted[name], view, conf, names, ctx.resolved)
        out.append(HostResult(name, _with_firewall(ctx, planned, wanted[name], seen)))
    for name in ctx.removed:
        seen = ctx.observed[name]
        if isinstance(seen, HostError):
            out.append(HostResult(name, error=seen, removed=True))
            continue
        owner = seen.config.mesh if seen.config is not None else None
        if owner is not None and owner != ctx.inventory.mesh.name:
            # Another mesh's interface now (the host was given to it): only our /etc/hosts block
            # is ours to remove; TearDown would take their interface down.
            note = f"{conf} belongs to mesh {owner!r}: its interface is left as it is"
            out.append(HostResult(name, HostPlan(name, (), notes=(note,)), removed=True))
            continue
        present = seen.device is not None or (seen.config is not None and seen.config.managed)
        present = present or seen.hosts_block is not None
        changes: tuple[Change, ...] = (TearDown(interface),) if present else ()
        out.append(HostResult(name, HostPlan(name, changes), removed=True))
    return out


async def observe_mesh(
    file: InventoryFile,
    names: list[str],
    options: RunOptions,
    sessions: Sessions,
    lock: str | None = None,
) -> Context:
    """Connect to the selected hosts and read them (with ``lock``, the command's name: take every
    host's lock first and hold it while ``sessions`` is open, as ``apply`` does)."""
    inventory = file.load()
    policy = check_policy_tests(inventory)
    selected = select(inventory, names)
    nodes: list[str] = [n for n in selected if inventory.find(n) is not None]
    removed: list[str] = [r.name for r in inventory.removed if r.name in selected]
    targets = {n: ssh_target(inventory.node(n)) for n in nodes}
    targets.update({r.name: ssh_target(r) for r in inventory.removed if r.name in removed})
    ssh = ssh_options(file, inventory, options)
    files = dict(options.extra_files(inventory) if options.extra_files else {})
    for name, extra in textfile_files(inventory).items():  # [metrics] textfile: on, or removed
        files[name] = (*files.get(name, ()), *extra)
    unreachable: dict[str, HostError] = {}
    if lock is not None:
        unreachable = await connect_and_lock(sessions, targets, inventory, ssh, options, lock)
    observed = await open_and_observe(
        sessions, targets, inventory, ssh, options, files=files, failed=unreachable
    )
    keys = effective_keys(inventory, observed)
    pending = frozenset(
        n for n in nodes if isinstance(observed[n], ObservedHost) and keys.get(n) is None
    )
    # Hosts whose key file is missing get one first too (recovered from their running interface or
    # config where they can), even when their public key is known.
    keyless = frozenset(
        n for n in nodes if isinstance(s := observed[n], ObservedHost) and not s.key_file
    )
    ctx = Context(
        inventory,
        ssh,
        nodes,
        removed,
        targets,
        observed,
        keys,
        pending,
        resolve_endpoints(inventory),
        keyless=keyless,
        policy=policy,
    )
    ctx.facts = derive_facts(inventory, keys, ctx.reachable())
    ctx.files = files
    return ctx


def mesh_plan(ctx: Context) -> MeshPlan:
    keyed = with_keys(ctx.inventory, ctx.keys)
    wanted = wanted_hosts(keyed, ctx.pending, ctx.facts, ctx.files)
    updates: dict[str, PublicKey] = {
        n.name: k
        for n in ctx.inventory
        if (k := ctx.keys.get(n.name)) is not None and k != n.public_key
    }
    skipped = tuple(n.name for n in keyed if n.public_key is None and n.name not in ctx.pending)
    return MeshPlan(tuple(host_plans(ctx, wanted)), updates, skipped, wanted)


def plan(file: InventoryFile, names: list[str], options: RunOptions) -> MeshPlan:
    """Read every selected host and plan its changes. Changes nothing anywhere."""

    async def run() -> MeshPlan:
        async with Sessions() as sessions:
            return mesh_plan(await observe_mesh(file, names, options, sessions))

    return asyncio.run(run())
