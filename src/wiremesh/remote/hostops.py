"""Host operations: carry out a plan on one host over its session (the thin adapter around wg/ip)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from wiremesh.codec.observe import parse_observation
from wiremesh.errors import ValidationError
from wiremesh.model.firewall import confirm_needed
from wiremesh.model.host import ManagedFile, ObservedHost, WantedHost
from wiremesh.model.keys import PrivateKey, PublicKey
from wiremesh.model.live import live_steps
from wiremesh.model.plan import (
    AddPeer,
    BringUp,
    Change,
    CreateKey,
    EnableForwarding,
    EnableService,
    HostPlan,
    LinkUp,
    RemoveFile,
    RemovePeer,
    SetAddress,
    SetHostsBlock,
    SetListenPort,
    SetMtu,
    SetPrivateKey,
    SetRoute,
    TearDown,
    UpdatePeer,
    WriteConfig,
    WriteFile,
)
from wiremesh.remote import nft, scripts
from wiremesh.remote.firewallops import (
    CONFIRM_S,
    PendingGuard,
    after_peers,
    before_peers,
    begin_guard,
    firewall_changes_of,
)
from wiremesh.remote.live import EXIT_UNDO_FAILED, live_script
from wiremesh.remote.ssh import HostCommandError, HostError, Session

log = logging.getLogger("wiremesh.apply")


async def observe(
    session: Session,
    interface: str,
    mesh: str = "mesh",
    targets: tuple[str, ...] = (),
    files: tuple[str, ...] = (),
    full: bool = True,
    policy: bool = True,
) -> ObservedHost:
    """Read the host's state (one round trip, read-only); ``full=False`` for status only;
    ``policy``: the mesh has an access policy (see :func:`wiremesh.remote.scripts.observe`)."""
    script = scripts.observe(interface, mesh, targets, files, full, policy)
    result = await session.run(script, step="reading the host's state")
    try:
        return parse_observation(interface, result.stdout)
    except ValidationError as exc:
        raise HostError(
            session.node, f"unexpected answer while reading its state: {exc.message}"
        ) from None


async def ensure_key(session: Session, interface: str) -> PublicKey:
    """Make the host's private key there if it has none; return only its public key."""
    result = await session.run(scripts.ensure_key(interface), step="creating the private key")
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if not lines:
        raise HostError(session.node, "creating the private key printed no public key")
    try:
        return PublicKey.parse(lines[-1].strip(), "public key from the host")
    except ValidationError as exc:
        raise HostError(session.node, exc.message) from None


@dataclass(frozen=True)
class Outcome:
    """What apply did on one host; ``guard``: a guard change waiting for its confirmation."""

    node: str
    done: tuple[Change, ...]
    guard: PendingGuard | None = None


LIVE: tuple[type[Change], ...] = (
    *(AddPeer, RemovePeer, UpdatePeer, SetListenPort, SetPrivateKey),
    *(LinkUp, SetAddress, SetMtu, SetRoute),
)
"""Changes carried out on the running interface by the one live step."""


def _spare_key() -> PublicKey:
    """A throwaway public key for prefixes that leave a peer (see :mod:`wiremesh.model.live`)."""
    return PrivateKey.generate().public_key()


async def execute(
    session: Session,
    plan: HostPlan,
    wanted: WantedHost,
    observed: ObservedHost,
    mesh: str,
    method: str = "wg-set",
    at: float | None = None,
    confirm_s: int = CONFIRM_S,
) -> Outcome:
    """Carry out ``plan`` on the host: the config file and the interface in one step (see
    :mod:`wiremesh.remote.live`), then /etc/hosts, forwarding, managed files and the service.

    A running interface changes peer by peer with ``wg set`` (:mod:`wiremesh.model.live`); if a step
    fails, the host undoes what it did, and the error says whether it is back as it was.
    ``method`` is for the benchmark's references only; ``at``: see
    :func:`wiremesh.remote.live.live_script`.
    """
    interface = wanted.device.interface.name
    done: list[Change] = []
    if plan.empty:
        return Outcome(plan.node, ())
    for change in plan.of(CreateKey):
        await ensure_key(session, interface)
        done.append(change)
    firewall = firewall_changes_of(plan.changes)
    if firewall:
        await before_peers(session, interface, wanted.firewall, observed.firewall, firewall)
    write = bool(plan.of(WriteConfig))
    bring_up = bool(plan.of(BringUp))
    live = [c for c in plan.changes if isinstance(c, LIVE)]
    steps = live_steps(live, interface, observed.incremental_wg, _spare_key())
    if write or bring_up or not steps.empty:
        script = live_script(interface, steps, write, bring_up, method, at)
        try:
            await session.run(
                script,
                step=f"changing {interface}",
                stdin=wanted.config_text if write else None,
            )
        except HostCommandError as exc:
            if exc.status == EXIT_UNDO_FAILED:
                raise HostError(
                    session.node,
                    exc.reason,
                    "run 'wiremesh plan' to see what differs, then 'wiremesh apply' again",
                ) from None
            raise HostError(
                session.node,
                exc.reason,
                "check the config wiremesh rendered ('wiremesh show NODE') and the host's wg tools",
            ) from None
        done += [c for c in plan.changes if isinstance(c, WriteConfig | BringUp) or c in live]
    if firewall:
        await after_peers(session, interface, wanted.firewall, firewall)
    for change in plan.of(SetHostsBlock):
        await session.run(
            scripts.write_hosts_block(mesh),
            step="updating /etc/hosts",
            stdin="\n".join(wanted.hosts_block) + "\n",
        )
        done.append(change)
    for change in plan.of(EnableForwarding):
        assert isinstance(change, EnableForwarding)
        await session.run(
            scripts.enable_forwarding(change.ipv4, change.ipv6), step="enabling forwarding"
        )
        done.append(change)
    texts = {f.path: f for f in wanted.files}
    activate: list[str] = []  # each command once, after all files were written
    for change in plan.of(WriteFile):
        assert isinstance(change, WriteFile)
        file = texts[change.path]
        await session.run(
            scripts.write_file(file.path, file.mode), step=f"writing {file.path}", stdin=file.text
        )
        done.append(change)
        if file.activate and file.activate not in activate:
            activate.append(file.activate)
    for command in activate:
        await session.run(command, step="activating the files written")
    deactivated: set[str] = set()
    for change in plan.of(RemoveFile):
        assert isinstance(change, RemoveFile)
        file = texts[change.path]
        if file.deactivate and file.deactivate not in deactivated:
            deactivated.add(file.deactivate)
            await session.run(file.deactivate, step=f"deactivating {file.path}")
        await session.run(scripts.remove_managed_file(file.path), step=f"removing {file.path}")
        done.append(change)
    for change in plan.of(EnableService):
        await session.run(scripts.enable_service(interface), step="enabling wg-quick@" + interface)
        done.append(change)
    guard = None
    if firewall and wanted.firewall is not None and confirm_needed(firewall):
        # Last: it may cut this very session off (then the host undoes it by itself).
        guard = await begin_guard(session, interface, wanted.firewall, confirm_s)
    done += firewall
    log.info("%s: %d change(s) applied", plan.node, len(done))
    return Outcome(plan.node, tuple(done), guard=guard)


async def tear_down(
    session: Session, interface: str, mesh: str, files: Sequence[ManagedFile] = ()
) -> Outcome:
    """Take a removed node out of the mesh on its host (with ``files``: managed files to remove,
    where they are ours, each ``deactivate`` command run once first)."""
    await session.run(scripts.remove_hosts_block(mesh), step="removing the /etc/hosts block")
    for command in dict.fromkeys(f.deactivate for f in files if f.deactivate):
        await session.run(command, step="deactivating managed files")
    for file in files:
        await session.run(scripts.remove_managed_file(file.path), step=f"removing {file.path}")
    await session.run(scripts.tear_down(interface, mesh), step="taking the interface down")
    await session.run(nft.remove(interface), step="removing the firewall table")
    return Outcome(session.node, (TearDown(interface),))
