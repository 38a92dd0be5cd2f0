"""What a host says about its firewall (observed, pure values): our table, the file it is loaded
from at boot, and the state of a commit-confirmed change (:mod:`wiremesh.remote.nft`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wiremesh.model.nft import ObservedTable


class UndoOutcome(StrEnum):
    """How the last commit-confirmed change on a host ended."""

    CONFIRMED = "confirmed"  # a new SSH connection confirmed it: it stays
    ROLLED_BACK = "rolled-back"  # nobody confirmed in time: the host put the old table back
    UNDO_FAILED = "undo-failed"  # the host tried to put the old table back, and nft refused
    CANCELLED = "cancelled"  # the change itself did not load: nothing changed


@dataclass(frozen=True)
class PendingChange:
    """A change loaded commit-confirmed that nobody has confirmed yet."""

    token: str
    deadline: int  # epoch seconds: the host undoes the change then

    def overdue(self, now: int) -> bool:
        """True when the undo should have fired already (its process is gone)."""
        return now > self.deadline + 5


@dataclass(frozen=True)
class LastOutcome:
    """The end of the last commit-confirmed change (until the host reboots: it lives in /run)."""

    outcome: UndoOutcome
    token: str
    at: int  # epoch seconds

    def describe(self) -> str:
        """``the host rolled back firewall change abc123`` and the like."""
        return {
            UndoOutcome.CONFIRMED: f"firewall change {self.token} was confirmed",
            UndoOutcome.ROLLED_BACK: (
                f"the host rolled back firewall change {self.token}: nobody confirmed it in time "
                "(apply could not log in again?)"
            ),
            UndoOutcome.UNDO_FAILED: (
                f"the host could not roll back firewall change {self.token}: nft refused the saved "
                "table"
            ),
            UndoOutcome.CANCELLED: f"firewall change {self.token} did not load; nothing changed",
        }[self.outcome]


@dataclass(frozen=True)
class NftHostState:
    """One host's firewall as read by :func:`wiremesh.remote.nft.read`."""

    nft: bool  # nft is installed
    table: ObservedTable | None  # None: our table is absent (or nft is missing)
    error: str | None = None  # nft failed for another reason (its message)
    boot_sha256: str | None = None  # of the boot file; None: no boot file
    pending: tuple[PendingChange, ...] = ()
    last: LastOutcome | None = None
    now: int = 0  # the host's clock, epoch seconds
