"""A host's firewall in its plan (pure): what to change in our nftables table and boot file, and in
which order apply may load it.

The changes come from :func:`wiremesh.model.nft_diff.diff` (our table as read back against the
compiled one) and :func:`wiremesh.codec.nftables.boot_diff` (the file loaded at boot). Apply loads
them in one ``nft -f`` transaction (set elements only, where only they differ), before the peers
change, so that a node that joins a group is let in by the time its peer exists.

A change of the *guard* (drops on the public side) can cut apply's own SSH off. It is loaded last,
commit-confirmed: the host undoes it by itself unless apply confirms over a new SSH connection.
Until it is confirmed, neither the live table nor the boot file may hold it, so apply first loads
(and keeps for boot) the wanted table with the guard as it was (:func:`with_observed_guard`), and
the boot file gets the new guard only once the change is confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from wiremesh.model.changes import Change
from wiremesh.model.nft import GUARD, HostFirewall, NftChain, ObservedTable
from wiremesh.model.nft_diff import diff, needs_confirm
from wiremesh.model.nft_host import NftHostState, UndoOutcome


@dataclass(frozen=True)
class RollBackPending(Change):
    """A commit-confirmed firewall change of an earlier run that nobody confirmed (that run died):
    undo it now, before anything else is loaded."""

    token: str

    def describe(self) -> str:
        return f"roll back firewall change {self.token}, which no run confirmed"


def with_observed_guard(wanted: HostFirewall, observed: ObservedTable | None) -> HostFirewall:
    """``wanted`` with the guard chain that the host has now (none if it has none, or one wiremesh
    would not have written): what may be loaded before a guard change is confirmed."""
    chains = [c for c in wanted.table.chains if c.name != GUARD]
    found = next((c for c in observed.chains if c.name == GUARD), None) if observed else None
    if found is not None and all(r.rule is not None for r in found.rules):
        chains.append(NftChain(GUARD, found.base, tuple(r.rule for r in found.rules if r.rule)))
        guard = wanted.guard
    else:
        guard = ()
    return replace(wanted, table=replace(wanted.table, chains=tuple(chains)), guard=guard)


def firewall_changes(
    wanted: HostFirewall | None, state: NftHostState | None, boot_changes: list[Change]
) -> tuple[list[Change], list[str]]:
    """The firewall changes of one host (with ``boot_changes`` from ``boot_diff``) and notes for
    the operator. ``state`` None: the host's firewall was not read (nothing is planned)."""
    if state is None:
        return [], []
    notes: list[str] = []
    changes: list[Change] = [RollBackPending(p.token) for p in state.pending]
    if state.last is not None and state.last.outcome in (
        UndoOutcome.ROLLED_BACK,
        UndoOutcome.UNDO_FAILED,
    ):
        notes.append(state.last.describe())
    if not state.nft:
        return changes, notes  # the plan's tool check reports the missing nft
    changes += diff(wanted, state.table)
    changes += boot_changes
    return changes, notes


def confirm_needed(changes: list[Change]) -> bool:
    """True when the changes include a guard change (loaded commit-confirmed)."""
    return needs_confirm(changes)
