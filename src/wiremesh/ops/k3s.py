"""k3s on the mesh (issue 6): being written; the signature below is the contract with ``apply --k3s``."""

from __future__ import annotations

from wiremesh.errors import OperationError
from wiremesh.model.host import ManagedFile
from wiremesh.model.inventory import Inventory


def k3s_files(inventory: Inventory) -> dict[str, tuple[ManagedFile, ...]]:
    """The k3s config file wanted on each node's host that has a ``k3s_role``, by node name."""
    raise OperationError("k3s support is not finished yet", "run apply without --k3s")
