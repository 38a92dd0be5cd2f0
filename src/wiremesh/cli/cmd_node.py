"""``wiremesh node add|set|rm|ls``."""

from __future__ import annotations

import argparse

from wiremesh.cli.args import int_arg, int_range, mtu_arg, parse_option, path_arg
from wiremesh.cli.context import Context
from wiremesh.cli.output import cell
from wiremesh.codec import fields as f
from wiremesh.model.names import node_name
from wiremesh.ops.nodes import (
    CLEARABLE,
    MESH_SETTABLE,
    NodeFields,
    add_node,
    node_record,
    remove_node,
    set_mesh,
    set_node,
)


def _node_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", metavar="NAME")
    p.add_argument("--endpoint", metavar="HOST[:PORT]", help="public address peers use")
    p.add_argument("--ssh", metavar="[USER@]HOST[:PORT]", help="where wiremesh logs in")
    p.add_argument("--address", metavar="IP", help="overlay IPv4 address (default: lowest free)")
    p.add_argument("--address6", metavar="IP6", help="overlay IPv6 address (default: lowest free)")
    p.add_argument("--site", help="site name: nodes of one site use private endpoints")
    p.add_argument("--private-endpoint", metavar="HOST[:PORT]", help="address within the site")
    p.add_argument("--listen-port", type=int_arg, metavar="N", help="UDP port (default: mesh port)")
    p.add_argument("--relay", metavar="NODE", help="relay for this node (default: the mesh's)")
    p.add_argument("--k3s-role", choices=("server", "agent"), help="role in a k3s cluster")
    p.add_argument(
        "--allowed-ip",
        action="append",
        metavar="CIDR",
        dest="allowed_ips",
        help="extra subnet routed to this node (repeatable)",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``node`` and its subcommands."""
    node = sub.add_parser("node", help="add, change, remove and list nodes")
    nsub = node.add_subparsers(dest="node_command", metavar="SUBCOMMAND", parser_class=type(node))
    nsub.required = True
    add = nsub.add_parser("add", help="add a node (allocates the lowest free address)")
    _node_options(add)
    add.set_defaults(handler=run_add)
    set_ = nsub.add_parser("set", help="change a node's settings")
    _node_options(set_)
    set_.add_argument(
        "--clear",
        action="append",
        default=[],
        metavar="KEY",
        choices=CLEARABLE,
        help=f"remove a setting (one of: {', '.join(CLEARABLE)})",
    )
    set_.set_defaults(handler=run_set)
    rm = nsub.add_parser("rm", help="remove a node (then 'apply' removes it from the hosts)")
    rm.add_argument("name", metavar="NAME")
    rm.add_argument(
        "--forget",
        action="store_true",
        help="do not tear the host down at the next apply (also drops a pending removal)",
    )
    rm.set_defaults(handler=run_rm)
    mesh = sub.add_parser("mesh", help="change mesh-wide settings")
    msub = mesh.add_subparsers(dest="mesh_command", metavar="SUBCOMMAND", parser_class=type(mesh))
    msub.required = True
    mset = msub.add_parser("set", help="change mesh settings (mtu, keepalive, ssh_config, relay)")
    mset.add_argument(
        "--mtu", type=mtu_arg, help='MTU of every interface, or "auto" (from each host\'s underlay)'
    )
    mset.add_argument(
        "--keepalive", type=int_range(0, 65535), metavar="S", help="PersistentKeepalive seconds"
    )
    mset.add_argument(
        "--ssh-config-file", type=path_arg, metavar="PATH", help="OpenSSH config for this mesh"
    )
    mset.add_argument("--relay", metavar="NODE", help="node relaying between nodes behind NAT")
    mset.add_argument(
        "--clear",
        action="append",
        default=[],
        choices=MESH_SETTABLE,
        metavar="KEY",
        help=f"back to the default (one of: {', '.join(MESH_SETTABLE)})",
    )
    mset.set_defaults(handler=run_mesh_set)
    ls = nsub.add_parser("ls", help="list nodes")
    ls.add_argument("--json", action="store_true", help="machine-readable output")
    ls.set_defaults(handler=run_ls)


def _fields(args: argparse.Namespace) -> NodeFields:
    return NodeFields(
        address=parse_option(f.parse_ipv4, args.address, "--address"),
        address6=parse_option(f.parse_ipv6, args.address6, "--address6"),
        endpoint=parse_option(f.parse_endpoint, args.endpoint, "--endpoint"),
        ssh=parse_option(f.parse_ssh, args.ssh, "--ssh"),
        site=parse_option(f.parse_label, args.site, "--site"),
        private_endpoint=parse_option(
            f.parse_endpoint, args.private_endpoint, "--private-endpoint"
        ),
        listen_port=parse_option(f.parse_port_value, args.listen_port, "--listen-port"),
        allowed_ips=(
            tuple(f.parse_subnet(v, "--allowed-ip") for v in args.allowed_ips)
            if args.allowed_ips
            else None
        ),
        relay=parse_option(f.parse_node_name, args.relay, "--relay"),  # type: ignore[arg-type]
        k3s_role=args.k3s_role,
        clear=frozenset(getattr(args, "clear", [])),
    )


def run_add(args: argparse.Namespace, ctx: Context) -> int:
    """``node add``."""
    name = node_name(args.name)
    node = add_node(ctx.inventory, name, _fields(args))
    extra = f", address6 {node.address6}" if node.address6 else ""
    ctx.out.info(f"added node {node.name} with address {node.address}{extra}")
    return 0


def run_set(args: argparse.Namespace, ctx: Context) -> int:
    """``node set``."""
    before, after = set_node(ctx.inventory, args.name, _fields(args))
    if before == after:
        ctx.out.info(f"node {after.name}: nothing changed")
    else:
        ctx.out.info(f"updated node {after.name}; run 'wiremesh apply' to change the hosts")
    return 0


def run_rm(args: argparse.Namespace, ctx: Context) -> int:
    """``node rm``."""
    removal = remove_node(ctx.inventory, args.name, args.forget)
    if removal.forgotten:
        ctx.out.info(f"dropped the pending removal of {removal.name}; its host is left as it is")
    elif removal.pending:
        ctx.out.info(
            f"removed node {removal.name}; 'wiremesh apply' removes it from the other hosts "
            "and takes its interface down"
        )
    else:
        ctx.out.info(f"removed node {removal.name}; run 'wiremesh apply' to update the other hosts")
    return 0


def run_mesh_set(args: argparse.Namespace, ctx: Context) -> int:
    """``mesh set``."""
    changes: dict[str, object] = {}
    if args.mtu is not None:
        changes["mtu"] = f.parse_mtu(args.mtu, "--mtu")
    if args.keepalive is not None:
        changes["keepalive"] = f.parse_seconds(args.keepalive, "--keepalive")
    if args.ssh_config_file is not None:
        changes["ssh_config"] = f.parse_text(args.ssh_config_file, "--ssh-config-file")
    if args.relay is not None:
        changes["relay"] = f.parse_node_name(args.relay, "--relay")
    before, mesh = set_mesh(ctx.inventory, changes, frozenset(args.clear))
    if before == mesh:
        ctx.out.info(f"mesh {mesh.name}: nothing changed")
    else:
        ctx.out.info(f"mesh {mesh.name}: updated; run 'wiremesh apply' to change the hosts")
    return 0


def run_ls(args: argparse.Namespace, ctx: Context) -> int:
    """``node ls``."""
    inventory = ctx.inventory.load()
    records = [node_record(inventory, n) for n in inventory]
    if args.json:
        ctx.out.json(
            {
                "mesh": {
                    "name": inventory.mesh.name,
                    "interface": inventory.mesh.interface,
                    "cidr": str(inventory.mesh.cidr),
                    "cidr6": str(inventory.mesh.cidr6) if inventory.mesh.cidr6 else None,
                    "port": inventory.mesh.port,
                },
                "nodes": records,
            }
        )
        return 0
    from rich.table import Table

    mesh = inventory.mesh
    networks = f"{mesh.cidr}, {mesh.cidr6}" if mesh.cidr6 else str(mesh.cidr)
    relay = f", relay {mesh.relay}" if mesh.relay else ""
    title = f"mesh {mesh.name} ({networks}), port {mesh.port}{relay}"
    table = Table(title=cell(title), title_justify="left")
    # Optional columns appear when a node uses them, so that the table fits a terminal.
    wanted = {
        "port": any(n.listen_port is not None for n in inventory),
        "routes": any(n.allowed_ips for n in inventory),
        "relay": any(n.relay for n in inventory),
        "k3s": any(n.k3s_role for n in inventory),
    }
    columns = [
        "name",
        "address",
        "endpoint",
        "port",
        "site",
        "ssh",
        "routes",
        "relay",
        "k3s",
        "key",
    ]
    columns = [c for c in columns if wanted.get(c, True)]
    for column in columns:
        table.add_column(column, no_wrap=column in ("name", "address", "port"), overflow="fold")
    for r in records:
        key = r["public_key"][:8] + "…" if r["public_key"] else "[dim]not yet[/dim]"
        site = (r["site"] or "") + (f"\n{r['private_endpoint']}" if r["private_endpoint"] else "")
        values = {
            "name": cell(r["name"]),
            "address": cell(r["address"] + (f"\n{r['address6']}" if r["address6"] else "")),
            "endpoint": cell(r["endpoint"]) or "[dim](behind NAT)[/dim]",
            "port": cell(r["listen_port"]),
            "site": cell(site),
            "ssh": cell(r["ssh"]),
            "routes": cell("\n".join(r["allowed_ips"])),
            "relay": cell(r["relay"]),
            "k3s": cell(r["k3s_role"]),
            "key": key,
        }
        table.add_row(*(values[c] for c in columns))
    ctx.out.table(table)
    return 0
