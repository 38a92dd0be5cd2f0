"""``wiremesh init``: create the inventory."""

from __future__ import annotations

import argparse

from wiremesh.cli.args import int_arg, int_range, mtu_arg, parse_option
from wiremesh.cli.context import Context
from wiremesh.codec import fields as f
from wiremesh.errors import quote
from wiremesh.model.inventory import (
    DEFAULT_INTERFACE,
    DEFAULT_KEEPALIVE,
    DEFAULT_MTU,
    DEFAULT_PORT,
    MeshSettings,
)
from wiremesh.ops.nodes import init


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``init``."""
    p = sub.add_parser("init", help="create a new inventory (wiremesh.toml)")
    p.add_argument("--cidr", required=True, help="IPv4 overlay network, e.g. 10.0.0.0/24")
    p.add_argument("--cidr6", help="IPv6 overlay network (ULA), e.g. fd00:77::/64")
    p.add_argument("--name", default="mesh", help="mesh name (default: mesh)")
    p.add_argument("--port", type=int_arg, default=DEFAULT_PORT, help="UDP listen port (51820)")
    p.add_argument("--interface", default=DEFAULT_INTERFACE, help="WireGuard interface (wg0)")
    p.add_argument(
        "--mtu",
        type=mtu_arg,
        default=DEFAULT_MTU,
        help='interface MTU (1420), or "auto" (from the underlay)',
    )
    p.add_argument(
        "--keepalive",
        type=int_range(0, 65535),
        default=DEFAULT_KEEPALIVE,
        help="PersistentKeepalive (25 s)",
    )
    p.set_defaults(handler=run)


def run(args: argparse.Namespace, ctx: Context) -> int:
    """Create the inventory."""
    mesh = MeshSettings(
        cidr=f.parse_cidr4(args.cidr, "--cidr"),
        cidr6=parse_option(f.parse_cidr6, args.cidr6, "--cidr6"),
        name=f.parse_label(args.name, "--name"),
        port=f.parse_port_value(args.port, "--port"),
        interface=f.parse_interface(args.interface, "--interface"),
        mtu=f.parse_mtu(args.mtu, "--mtu"),
        keepalive=args.keepalive,
    )
    file = ctx.inventory
    init(file, mesh)
    ctx.out.info(f"created {file.path} (mesh {quote(mesh.name)}, {mesh.cidr})")
    ctx.out.info("next: wiremesh node add NAME --endpoint HOST --ssh root@HOST")
    return 0
