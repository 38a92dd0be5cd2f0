"""``wiremesh k3s config NODE``: print a node's k3s ``config.yaml`` (see docs/k3s.md)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from wiremesh.cli.context import Context
from wiremesh.errors import ExitStatus, ValidationError, quote
from wiremesh.model.inventory import K3S_ROLES

if TYPE_CHECKING:
    from wiremesh.model.addressing import IPAddress


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``k3s`` and its subcommand ``config``."""
    k3s = sub.add_parser("k3s", help="k3s over the mesh: a node's config.yaml (see docs/k3s.md)")
    ksub = k3s.add_subparsers(dest="k3s_command", metavar="SUBCOMMAND", parser_class=type(k3s))
    ksub.required = True
    c = ksub.add_parser(
        "config",
        help="print NODE's /etc/rancher/k3s/config.yaml (apply --k3s writes it on the hosts)",
        description="Print the k3s config.yaml of NODE on stdout; warnings go to stderr.",
    )
    c.add_argument("name", metavar="NODE")
    c.add_argument(
        "--role", choices=K3S_ROLES, help="server or agent (default: the node's k3s_role)"
    )
    c.add_argument(
        "--server",
        metavar="NODE",
        help="the server node to join (default: the first server in the inventory)",
    )
    c.add_argument(
        "--token-file", metavar="PATH", help="absolute path of the cluster token file on the node"
    )
    c.add_argument(
        "--node-external-ip",
        action="append",
        default=[],
        metavar="IP",
        help="the node's public address for k3s (repeatable: one IPv4, one IPv6; default: none)",
    )
    c.set_defaults(handler=run_config)


def _ip(text: str) -> IPAddress:
    """An IP address option value."""
    from ipaddress import ip_address

    from wiremesh.model.addressing import refuse_zone

    try:
        return ip_address(refuse_zone(text.strip(), "--node-external-ip"))
    except ValueError:
        raise ValidationError(
            f"--node-external-ip {quote(text)} is not an IP address",
            "give the node's public address, e.g. 203.0.113.10 or 2001:db8::10",
        ) from None


def run_config(args: argparse.Namespace, ctx: Context) -> int:
    """``k3s config``: the YAML on stdout, warnings on stderr."""
    # The model and the inventory store are imported here, not at start-up (cmd_converge does the
    # same): every command pays for the imports of every command module.
    from wiremesh.model.k3s import K3sRequest
    from wiremesh.ops.k3s import config_text

    request = K3sRequest(
        role=args.role,
        server=args.server,
        token_file=args.token_file,
        node_external_ips=tuple(_ip(text) for text in args.node_external_ip),
    )
    result = config_text(ctx.inventory, args.name, request)
    for warning in result.warnings:
        ctx.out.warn(warning)
    ctx.out.raw(result.text)
    return ExitStatus.OK
