"""``wiremesh import FILE...``: adopt existing wg-quick configs."""

from __future__ import annotations

import argparse

from wiremesh.cli.args import parse_option, path_arg
from wiremesh.cli.context import Context


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``import``."""
    p = sub.add_parser(
        "import",
        help="adopt existing wg-quick configs (one per host) into the inventory",
        description="Each FILE is one host's wg-quick config. The node name is the file's stem, or "
        "its directory's name for files named like an interface (alpha/wg0.conf -> alpha), or NAME "
        "in NAME=FILE. Private keys go to the key directory beside the inventory.",
    )
    p.add_argument(
        "files", nargs="+", type=path_arg, metavar="FILE", help="[NAME=]PATH of a wg-quick config"
    )
    p.add_argument("--name", help="mesh name when a new inventory is created (default: mesh)")
    p.add_argument(
        "--cidr",
        help="the mesh's IPv4 network (default: from the files' Address prefixes, else inferred)",
    )
    p.add_argument("--cidr6", help="the mesh's IPv6 network (default: as --cidr)")
    p.add_argument(
        "--drop-unsupported",
        action="store_true",
        help="import files with hooks (PostUp...) or PresharedKey, which the mesh will not keep",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Import."""
    from wiremesh.codec import fields as f
    from wiremesh.ops.importing import import_configs

    report = import_configs(
        ctx.inventory,
        args.files,
        parse_option(f.parse_label, args.name, "--name"),
        drop_unsupported=args.drop_unsupported,
        cidr=parse_option(f.parse_cidr4, args.cidr, "--cidr"),
        cidr6=parse_option(f.parse_cidr6, args.cidr6, "--cidr6"),
    )
    for note in report.notes:
        ctx.out.warn(note)
    verb = "created" if report.created else "updated"
    names = ", ".join(n.name for n in report.nodes)
    ctx.out.info(f"{verb} {ctx.inventory_path} with {len(report.nodes)} node(s): {names}")
    return 0
