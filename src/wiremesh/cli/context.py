"""What every command handler receives besides its parsed arguments."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from wiremesh.cli.output import Output

DEFAULT_INVENTORY = "wiremesh.toml"


@dataclass(frozen=True)
class Context:
    """The environment of one CLI run."""

    env: Mapping[str, str]
    out: Output
    debug: bool
    inventory_path: Path
    ssh_config: Path | None

    @staticmethod
    def inventory_from(file_arg: str | None, env: Mapping[str, str]) -> Path:
        """``-f`` wins, then ``$WIREMESH_FILE``, then ``./wiremesh.toml``."""
        if file_arg:
            return Path(file_arg)
        if env.get("WIREMESH_FILE"):
            return Path(env["WIREMESH_FILE"])
        return Path(DEFAULT_INVENTORY)
