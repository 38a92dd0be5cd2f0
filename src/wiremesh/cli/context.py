"""What every command handler receives besides its parsed arguments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from wiremesh.cli.output import Output

if TYPE_CHECKING:
    from wiremesh.store.inventory_file import InventoryFile

DEFAULT_INVENTORY = "wiremesh.toml"


@dataclass(frozen=True)
class Context:
    """The environment of one CLI run."""

    env: Mapping[str, str]
    out: Output
    debug: bool
    inventory_path: Path
    ssh_config: Path | None
    trust_ssh_config: bool = (
        False  # --trust-ssh-config: the inventory's ssh_config may run commands
    )

    @staticmethod
    def inventory_from(file_arg: str | None, env: Mapping[str, str]) -> Path:
        """``-f`` wins, then ``$WIREMESH_FILE``, then ``./wiremesh.toml``."""
        if file_arg:
            return Path(file_arg)
        if env.get("WIREMESH_FILE"):
            return Path(env["WIREMESH_FILE"])
        return Path(DEFAULT_INVENTORY)

    @cached_property
    def inventory(self) -> InventoryFile:
        """The inventory file of this run. Its warnings (an unusual mesh network...) go to stderr
        as soon as it is read, once each, before the command prints anything else."""
        from wiremesh.store.inventory_file import InventoryFile

        return InventoryFile(self.inventory_path, warn=self.out.warn)
