"""The list of command modules, in the order ``--help`` shows them."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wiremesh.cli.main import CommandModule

MODULES: list[CommandModule] = []
