"""``wiremesh status --watch``: the status tables refreshed in place on a terminal (rich Live).

Hosts are read by a :class:`~wiremesh.ops.monitor.Monitor`: one SSH connection per host, opened once
and reused by every refresh. A refresh waits for hosts at most one interval; a slower host keeps its
previous data (its age is shown) until it answers. Links whose state changed since the previous
refresh are shown in bold with the state they had ("◀ was down").

Without a terminal on stdout it refuses (exit code 2): a live display has nothing to redraw in a
pipe or a file, and one snapshot per interval would be a log nobody asked for; scripts use
``status --json`` (once) or ``wiremesh metrics`` / ``wiremesh exporter``. Ctrl-C ends it with exit
code 130, the display left as it last was.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import datetime
from typing import TYPE_CHECKING

from wiremesh.cli.cmd_converge import run_options
from wiremesh.cli.cmd_status import _node_table
from wiremesh.cli.context import Context
from wiremesh.cli.output import cell
from wiremesh.errors import ValidationError
from wiremesh.model.health import changed_links

if TYPE_CHECKING:
    from rich.console import RenderableType

    from wiremesh.ops.monitor import Snapshot

HOST_TIMEOUT_S = 10.0
INTERVAL_RANGE = (1.0, 3600.0)


def view(
    snapshot: Snapshot, changed: dict[tuple[str, str], str], interval: float, at: str
) -> RenderableType:
    """What one refresh shows: a header, each node's table, the totals."""
    from rich.console import Group
    from rich.text import Text

    health = snapshot.health
    parts: list[RenderableType] = [
        Text.from_markup(
            f"[bold]wiremesh status --watch[/bold]  {cell(at)}  every {interval:g} s  "
            f"[dim](Ctrl-C to quit)[/dim]"
        )
    ]
    for node in health.nodes:
        read = snapshot.reads.get(node.name)
        mine = {peer: was for (source, peer), was in changed.items() if source == node.name}
        if not node.reachable:
            line = f"[bold]{cell(node.name)}[/bold]  [red]unreachable:[/red] {cell(node.error)}"
            if mine:
                line += "  [bold yellow]◀ changed[/bold yellow]"
            parts.append(Text.from_markup(line))
            continue
        if read is not None and read.error is not None:
            parts.append(
                Text.from_markup(
                    f"[yellow]{cell(node.name)}: latest read failed ({cell(read.error)}); "
                    f"showing data {read.age_s:.0f} s old[/yellow]"
                )
            )
        if not node.peers and not node.interface_up:
            parts.append(
                Text.from_markup(
                    f"[bold]{cell(node.name)}[/bold]  [red]no interface[/red] (run 'wiremesh apply')"
                )
            )
            continue
        parts.append(_node_table(node, mine))
    verdict = "[green]healthy[/green]" if health.healthy else "[red]NOT healthy[/red]"
    parts.append(
        Text.from_markup(
            f"links up: {health.links_up}/{health.links_expected} ({health.count('direct')} "
            f"direct, {health.count('relayed')} relayed, {health.count('idle')} idle, "
            f"{health.count('down')} down); mesh {verdict}"
            + (f"; {len(changed)} link(s) changed" if changed else "")
        )
    )
    return Group(*parts)


def watch(args: argparse.Namespace, ctx: Context) -> int:
    """``status --watch``: refresh until Ctrl-C (exit code 130)."""
    if args.json or args.ping:
        raise ValidationError(
            "status --watch cannot be combined with --json or --ping",
            "use 'status --json' or 'status --ping' for one reading, 'status --watch' to follow",
        )
    low, high = INTERVAL_RANGE
    if not low <= args.interval <= high:
        raise ValidationError(
            f"--interval {args.interval:g} is out of range",
            f"give seconds from {low:g} to {high:g}",
        )
    if not ctx.out.interactive:
        raise ValidationError(
            "status --watch needs a terminal on stdout",
            "for scripts, run 'wiremesh status --json' (once, in a loop of your own) or "
            "'wiremesh metrics'; for monitoring, 'wiremesh exporter'",
        )
    from rich.live import Live

    from wiremesh.ops.monitor import Monitor

    file = ctx.inventory
    options = run_options(args, ctx, False)
    interval = float(args.interval)

    async def loop() -> None:
        monitor = Monitor(
            file,
            options,
            interval=interval,
            host_timeout=min(HOST_TIMEOUT_S, args.command_timeout),
            shown=args.nodes or None,
        )
        previous: Snapshot | None = None
        try:
            with Live(console=ctx.out.console, auto_refresh=False, transient=False) as live:
                while True:
                    began = time.monotonic()
                    snapshot = await monitor.refresh(wait=interval)
                    changed = changed_links(previous.health, snapshot.health) if previous else {}
                    at = datetime.now().strftime("%H:%M:%S")
                    live.update(view(snapshot, changed, interval, at), refresh=True)
                    previous = snapshot
                    await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))
        finally:
            await monitor.close()

    try:
        asyncio.run(loop())
    except KeyboardInterrupt:
        return 130
    return 130  # pragma: no cover - the loop only ends by an interrupt
