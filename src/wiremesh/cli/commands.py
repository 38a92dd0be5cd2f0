"""The list of command modules, in the order ``--help`` shows them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from wiremesh.cli import (
    cmd_converge,
    cmd_import,
    cmd_init,
    cmd_k3s,
    cmd_lab,
    cmd_metrics,
    cmd_node,
    cmd_policy,
    cmd_render,
    cmd_status,
)

if TYPE_CHECKING:
    from wiremesh.cli.main import CommandModule

MODULES: list[CommandModule] = [
    cmd_init,
    cmd_node,
    cmd_render,
    cmd_import,
    cmd_converge,
    cmd_status,
    cmd_metrics,
    cmd_policy,
    cmd_k3s,
    cmd_lab,
]
