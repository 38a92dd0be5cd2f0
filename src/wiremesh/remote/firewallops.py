"""Carrying out a host's firewall changes over its session (see :mod:`wiremesh.model.firewall` for
the order and why, and :mod:`wiremesh.remote.nft` for the host snippets).

- :func:`before_peers`: undo an earlier run's unconfirmed change, load the table (set elements only
  where only they differ) and keep it as the boot file, before the peers change. For a guard
  change, what is loaded and kept here is the wanted table with the guard the host has now.
- :func:`after_peers`: with no policy left, delete our table and boot file (once the config no
  longer loads it).
- :func:`begin_guard`: last of the host's steps, the guard change commit-confirmed.
- :func:`confirm_guard`: over a *new* SSH connection, confirm it and keep it for boot; if no new
  connection can be made, wait for the host's own undo and say so.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from dataclasses import dataclass

from wiremesh.codec.nft_host import parse_read
from wiremesh.codec.nftables import render, transaction
from wiremesh.errors import ValidationError
from wiremesh.model.changes import Change
from wiremesh.model.endpoint import SshTarget
from wiremesh.model.firewall import RollBackPending, confirm_needed, with_observed_guard
from wiremesh.model.nft import HostFirewall
from wiremesh.model.nft_changes import FirewallChange
from wiremesh.model.nft_diff import diff
from wiremesh.model.nft_host import NftHostState
from wiremesh.remote import nft
from wiremesh.remote.ssh import HostError, Session, SshOptions, connect

CONFIRM_S = 60
"""Seconds a host keeps an unconfirmed guard change before it undoes it (``--confirm-timeout``)."""


def firewall_changes_of(changes: tuple[Change, ...]) -> list[Change]:
    """The firewall records of a host plan."""
    return [c for c in changes if isinstance(c, FirewallChange | RollBackPending)]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def before_peers(
    session: Session,
    interface: str,
    wanted: HostFirewall | None,
    state: NftHostState | None,
    changes: list[Change],
) -> None:
    """Everything of the firewall that comes before the peers change (see the module docstring)."""
    for change in changes:
        if isinstance(change, RollBackPending):
            await session.run(
                nft.rollback(interface, change.token),
                step=f"rolling back firewall change {change.token}",
                check=False,  # 4: it fired meanwhile; either way nothing of it is pending now
            )
    if wanted is None or state is None:
        return
    first = with_observed_guard(wanted, state.table) if confirm_needed(changes) else wanted
    loaded = transaction(first, state.table, diff(first, state.table))
    if loaded is not None:
        await session.run(nft.load(interface), step="loading the firewall table", stdin=loaded)
    keep = render(first)
    if state.boot_sha256 != _sha(
        keep
    ):  # the boot file holds what runs (never an unconfirmed guard)
        await session.run(nft.persist(interface), step="keeping the table for boot", stdin=keep)


async def after_peers(
    session: Session, interface: str, wanted: HostFirewall | None, changes: list[Change]
) -> None:
    """No policy applies to the host any more: delete our table and boot file."""
    if wanted is None and any(isinstance(c, FirewallChange) for c in changes):
        await session.run(nft.remove(interface), step="removing the firewall table")


@dataclass(frozen=True)
class PendingGuard:
    """A guard change loaded commit-confirmed: the host undoes it at ``deadline`` (its clock)."""

    token: str
    deadline: int
    seconds: int
    started: float  # time.monotonic() when the change was loaded


async def begin_guard(
    session: Session, interface: str, wanted: HostFirewall, seconds: int = CONFIRM_S
) -> PendingGuard:
    """Load the whole wanted table, guard included, commit-confirmed (the host's last step)."""
    token = secrets.token_hex(6)
    result = await session.run(
        nft.begin_confirmed(interface, token, seconds),
        step="loading the guard change (commit-confirmed)",
        stdin=render(wanted),
        timeout=seconds + 15,  # if the guard cut this very session, the host's undo revives it
    )
    words = result.stdout.split()
    if len(words) != 3 or words[0] != "pending" or words[1] != token or not words[2].isdigit():
        raise HostError(session.node, f"the guard change gave an unexpected answer: {words!r}")
    return PendingGuard(token, int(words[2]), seconds, time.monotonic())


async def _outcome(node: str, target: SshTarget, ssh: SshOptions, interface: str) -> str:
    """Read, over another new connection, how the host's last guard change ended."""
    session = await connect(node, target, ssh)
    try:
        result = await session.run(nft.read(interface), step="reading the firewall state")
    finally:
        session.close()
    try:
        state = parse_read(result.stdout)
    except ValidationError as exc:
        raise HostError(node, exc.message) from None
    if state.last is None:
        return "its state is unknown"
    return state.last.describe()


async def confirm_guard(
    node: str,
    target: SshTarget,
    ssh: SshOptions,
    interface: str,
    wanted: HostFirewall,
    pending: PendingGuard,
) -> None:
    """Confirm a guard change over a new SSH connection, then keep it for boot. Raise
    :class:`HostError` saying what became of it when that fails."""
    try:
        fresh = await connect(node, target, ssh)
    except HostError as exc:
        # No new login: the guard probably cut SSH. The host undoes the change at its deadline.
        await asyncio.sleep(max(0.0, pending.started + pending.seconds + 3 - time.monotonic()))
        try:
            outcome = await _outcome(node, target, ssh, interface)
        except HostError as again:
            outcome = f"it is still unreachable ({again.reason})"
        raise HostError(
            node,
            f"could not log in again to confirm the guard change ({exc.reason}); {outcome}",
            "the guard drops a port apply needs (the SSH port?); fix the policy, or run apply "
            "with --force only once the SSH port is not guarded",
        ) from None
    try:
        result = await fresh.run(
            nft.confirm(interface, pending.token), step="confirming the guard change", check=False
        )
        if result.status == 0:
            await fresh.run(
                nft.persist(interface), step="keeping the table for boot", stdin=render(wanted)
            )
            return
        said = result.stdout.strip() or result.stderr.strip()
        if result.status == 3:
            raise HostError(
                node,
                f"the host rolled back firewall change {pending.token} before apply could confirm "
                f"it (within {pending.seconds} s, over a new SSH connection): its firewall is as "
                "before",
                "if the guard cut SSH off, fix the policy; else run apply again, with "
                "--confirm-timeout S for a longer window",
            )
        if result.status == 7:
            raise HostError(
                node,
                f"the host could not roll back firewall change {pending.token}: {said}",
                "log in on the host's console and check 'nft list table inet wiremesh'",
            )
        raise HostError(node, f"confirming the guard change failed: {said}")
    finally:
        fresh.close()
