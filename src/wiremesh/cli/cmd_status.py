"""``wiremesh status [--json] [--ping]``: is the mesh up? Exit code 1 when it is not healthy."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wiremesh.cli.cmd_converge import add_run_options, run_options
from wiremesh.cli.context import Context
from wiremesh.cli.output import cell
from wiremesh.errors import ExitStatus

if TYPE_CHECKING:
    from rich.table import Table

    from wiremesh.model.health import MeshHealth, NodeStatus, PingResult

SCHEMA_VERSION = 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status``."""
    p = sub.add_parser("status", help="interfaces, peers, handshakes; with --ping a ping matrix")
    p.add_argument("nodes", nargs="*", metavar="NODE", help="only these nodes (default: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output (see README)")
    p.add_argument("--ping", action="store_true", help="every host pings every other mesh address")
    p.add_argument(
        "--watch",
        action="store_true",
        help="refresh the tables in place on a terminal, highlighting links that change state",
    )
    p.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="S",
        help="with --watch: seconds between refreshes (default 5)",
    )
    add_run_options(p)
    p.set_defaults(handler=run)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def _bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def to_json(health: MeshHealth) -> dict[str, Any]:
    """The documented, stable ``status --json`` schema (version 1)."""
    return {
        "schema": SCHEMA_VERSION,
        "healthy": health.healthy,
        "links": {
            "expected": health.links_expected,
            "up": health.links_up,
            "direct": health.count("direct"),
            "relayed": health.count("relayed"),
            "idle": health.count("idle"),
            "down": health.count("down"),
        },
        "nodes": [
            {
                "name": n.name,
                "reachable": n.reachable,
                "error": n.error,
                "interface_up": n.interface_up,
                "listen_port": n.listen_port,
                "mtu": n.mtu,
                "backend": n.backend,
                "peers": [
                    {
                        "name": p.name,
                        "public_key": str(p.public_key) if p.public_key else None,
                        "configured": p.configured,
                        "endpoint": str(p.endpoint) if p.endpoint else None,
                        "endpoint_configured": (
                            str(p.configured_endpoint) if p.configured_endpoint else None
                        ),
                        "endpoint_mismatch": p.endpoint_mismatch,
                        "latest_handshake_age_s": (
                            round(p.latest_handshake_age_s, 1)
                            if p.latest_handshake_age_s is not None
                            else None
                        ),
                        "rx_bytes": p.rx_bytes,
                        "tx_bytes": p.tx_bytes,
                        "up": p.up,
                        "link": p.link,
                        "via": p.via,
                        "reason": p.reason,
                        "note": p.note,
                    }
                    for p in n.peers
                ],
            }
            for n in health.nodes
        ],
        "ping": None
        if health.ping is None
        else [
            {
                "from": p.source,
                "to": p.target,
                "address": p.address,
                "loss": p.loss,
                "rtt_ms": p.rtt_ms,
            }
            for p in health.ping
        ],
    }


def _node_table(node: NodeStatus, changed: Mapping[str, str] | None = None) -> Table:
    from rich.table import Table

    state = "[green]up[/green]" if node.interface_up else "[red]down[/red]"
    title = (
        f"[bold]{cell(node.name)}[/bold]  interface {state}  port {node.listen_port}  "
        f"mtu {node.mtu}  {node.backend}"
    )
    table = Table(title=title, title_justify="left", show_edge=False)
    for column in ("peer", "endpoint", "handshake", "rx", "tx", "link"):
        table.add_column(column)
    for p in node.peers:
        if p.link == "direct":
            link = "[green]direct[/green]"
        elif p.link == "relayed":
            link = f"[green]relayed[/green] via {cell(p.via)}"
        elif p.link == "idle":
            link = f"[dim]idle[/dim]: {cell(p.reason)}"
        else:
            link = f"[red]down[/red]: {cell(p.reason)}"
        was = (changed or {}).get(p.name)
        if was is not None:  # status --watch: the state changed since the previous refresh
            link += f"  [bold yellow]◀ was {cell(was)}[/bold yellow]"
        if p.note:
            link += f"\n[yellow]{cell(p.note)}[/yellow]"
        table.add_row(
            cell(p.name),
            cell(p.endpoint) or "[dim](learnt from handshakes)[/dim]",
            _age(p.latest_handshake_age_s),
            _bytes(p.rx_bytes),
            _bytes(p.tx_bytes),
            link,
            style="bold" if was is not None else None,
        )
    return table


def _matrix(health: MeshHealth, pings: tuple[PingResult, ...], family: int) -> Table:
    from rich.table import Table

    names = [n.name for n in health.nodes]
    table = Table(title=f"ping matrix (IPv{family}): loss / avg RTT", title_justify="left")
    table.add_column("from \\ to")
    for name in names:
        table.add_column(cell(name), justify="right")
    index = {(p.source, p.target): p for p in pings if (":" in p.address) == (family == 6)}
    for source in names:
        row = []
        for target in names:
            p = index.get((source, target))
            if source == target:
                row.append("[dim]-[/dim]")
            elif p is None:
                row.append("")
            elif p.received == 0:
                row.append("[red]100%[/red]")
            else:
                color = "green" if p.loss == 0 else "yellow"
                row.append(f"[{color}]{p.loss:.0%}[/{color}] {p.rtt_ms or 0:.2f}ms")
        table.add_row(cell(source), *row)
    return table


def run(args: argparse.Namespace, ctx: Context) -> int:
    """``status``."""
    if args.watch:
        from wiremesh.cli.watch import watch

        return watch(args, ctx)
    from wiremesh.ops.status import status

    health = status(ctx.inventory, run_options(args, ctx, not args.json), args.ping, args.nodes)
    code = ExitStatus.OK if health.healthy else ExitStatus.FAILED
    if args.json:
        ctx.out.json(to_json(health))
        return code
    out = ctx.out
    for node in health.nodes:
        if not node.reachable:
            out.line(f"[bold]{cell(node.name)}[/bold]  [red]unreachable:[/red] {cell(node.error)}")
            continue
        if not node.peers and not node.interface_up:
            out.line(
                f"[bold]{cell(node.name)}[/bold]  [red]no interface[/red] (run 'wiremesh apply')"
            )
            continue
        out.table(_node_table(node))
    if health.ping is not None:
        out.table(_matrix(health, health.ping, 4))
        if any(":" in p.address for p in health.ping):
            out.table(_matrix(health, health.ping, 6))
    verdict = "[green]healthy[/green]" if health.healthy else "[red]NOT healthy[/red]"
    out.line(
        f"links up: {health.links_up}/{health.links_expected} ({health.count('direct')} direct, "
        f"{health.count('relayed')} relayed, {health.count('idle')} idle, "
        f"{health.count('down')} down); mesh {verdict}"
    )
    return code
