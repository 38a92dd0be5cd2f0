"""``wiremesh render`` (offline configs for every node) and ``wiremesh show NODE``."""

from __future__ import annotations

import argparse
from pathlib import Path

from wiremesh.cli.args import path_arg
from wiremesh.cli.context import Context
from wiremesh.ops.render import render_all, show


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``render`` and ``show``."""
    p = sub.add_parser(
        "render", help="offline mode: write every node's wg-quick config to a directory"
    )
    p.add_argument(
        "--out",
        required=True,
        type=path_arg,
        metavar="DIR",
        help="writes DIR/<node>/<interface>.conf",
    )
    p.set_defaults(handler=run_render)
    s = sub.add_parser("show", help="print one node's rendered config")
    s.add_argument("name", metavar="NODE")
    s.add_argument("--reveal", action="store_true", help="include the offline private key")
    s.set_defaults(handler=run_show)


def run_render(args: argparse.Namespace, ctx: Context) -> int:
    """Render all configs."""
    report = render_all(ctx.inventory, Path(args.out))
    for warning in report.warnings:
        ctx.out.warn(warning)
    if report.new_keys:
        ctx.out.info(f"made {len(report.new_keys)} new key pair(s): {', '.join(report.new_keys)}")
    ctx.out.info(f"wrote {len(report.files)} config(s) under {args.out}/")
    return 0


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    """Show one config."""
    shown = show(ctx.inventory, args.name, args.reveal)
    if shown.unknown:
        ctx.out.warn(
            f"the public key of {', '.join(shown.unknown)} is not known yet: this config marks "
            "it and is not usable until 'wiremesh apply' (or 'wiremesh render') has made it"
        )
    ctx.out.raw(shown.text)
    return 0
