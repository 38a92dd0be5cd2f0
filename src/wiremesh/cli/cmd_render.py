"""``wiremesh render`` (offline configs for every node) and ``wiremesh show NODE``."""

from __future__ import annotations

import argparse
from pathlib import Path

from wiremesh.cli.context import Context
from wiremesh.ops.render import render_all, show
from wiremesh.store.inventory_file import InventoryFile


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``render`` and ``show``."""
    p = sub.add_parser(
        "render", help="offline mode: write every node's wg-quick config to a directory"
    )
    p.add_argument("--out", required=True, metavar="DIR", help="writes DIR/<node>/<interface>.conf")
    p.set_defaults(handler=run_render)
    s = sub.add_parser("show", help="print one node's rendered config")
    s.add_argument("name", metavar="NODE")
    s.add_argument("--reveal", action="store_true", help="include the offline private key")
    s.set_defaults(handler=run_show)


def run_render(args: argparse.Namespace, ctx: Context) -> int:
    """Render all configs."""
    report = render_all(InventoryFile(ctx.inventory_path), Path(args.out))
    for warning in report.warnings:
        ctx.out.warn(warning)
    if report.new_keys:
        ctx.out.info(f"made {len(report.new_keys)} new key pair(s): {', '.join(report.new_keys)}")
    ctx.out.info(f"wrote {len(report.files)} config(s) under {args.out}/")
    return 0


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    """Show one config."""
    ctx.out.raw(show(InventoryFile(ctx.inventory_path), args.name, args.reveal))
    return 0
