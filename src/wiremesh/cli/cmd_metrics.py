"""``wiremesh metrics`` (print the mesh's Prometheus metrics once) and ``wiremesh exporter`` (serve
them over HTTP). See README, "Metrics"."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from wiremesh.cli.cmd_converge import add_run_options, run_options
from wiremesh.cli.context import Context
from wiremesh.errors import ExitStatus, ValidationError

if TYPE_CHECKING:
    from wiremesh.ops.monitor import Snapshot

__all__ = ["add_host_timeout", "parse_listen", "register", "seconds"]

DEFAULT_LISTEN = "127.0.0.1:9586"  # 9586: the WireGuard exporters' port (Prometheus' port list)


def seconds(name: str, low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
        if not (low <= value <= high) or math.isnan(value):
            raise argparse.ArgumentTypeError(f"{name} {text} is out of range ({low:g}-{high:g})")
        return value

    return parse


def add_host_timeout(p: argparse.ArgumentParser) -> None:
    """``--host-timeout``: how long one read of one host may take, connecting included."""
    p.add_argument(
        "--host-timeout",
        type=seconds("--host-timeout", 0.5, 600),
        default=10.0,
        metavar="S",
        help="seconds one read of one host may take, connecting included (default 10)",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``metrics`` and ``exporter``."""
    m = sub.add_parser(
        "metrics", help="print the mesh's Prometheus metrics (one read of every host)"
    )
    add_host_timeout(m)
    add_run_options(m)
    m.set_defaults(handler=run_metrics)
    e = sub.add_parser(
        "exporter", help="serve the mesh's Prometheus metrics over HTTP (/metrics), read over SSH"
    )
    e.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        metavar="HOST:PORT",
        help=f"address to listen on (default {DEFAULT_LISTEN}; [::1]:PORT for IPv6)",
    )
    e.add_argument(
        "--interval",
        type=seconds("--interval", 0, 3600),
        default=15.0,
        metavar="S",
        help="read the hosts at most every S seconds, when scraped (default 15)",
    )
    e.add_argument(
        "--scrape-timeout",
        type=seconds("--scrape-timeout", 0, 300),
        default=5.0,
        metavar="S",
        help="a scrape waits at most S seconds for hosts; slower ones are served from their "
        "latest data (default 5)",
    )
    e.add_argument(
        "--stale-after",
        type=seconds("--stale-after", 0, 86400),
        default=60.0,
        metavar="S",
        help="while a host cannot be read, its latest data is served until it is S seconds old; "
        "then the host is exported as unreachable (default 60)",
    )
    add_host_timeout(e)
    add_run_options(e)
    e.set_defaults(handler=run_exporter)


def run_metrics(args: argparse.Namespace, ctx: Context) -> int:
    """``metrics``: the exposition text on stdout; exit 0 whatever the mesh's state (the state is
    in the numbers: ``wiremesh_healthy``), 2 for a bad inventory."""
    from wiremesh.codec.mesh_metrics import mesh_families
    from wiremesh.codec.prometheus import render
    from wiremesh.ops.monitor import read_once

    snapshot = read_once(ctx.inventory, run_options(args, ctx, False), args.host_timeout)
    ctx.out.raw(render(mesh_families(snapshot.metrics_input())))
    return ExitStatus.OK


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``."""
    hint = "give HOST:PORT, e.g. 127.0.0.1:9586 or [::1]:9586"
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValidationError(f"--listen {text!r} is not HOST:PORT", hint)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValidationError(f"--listen {text!r}: put an IPv6 address in brackets", hint)
    return host, int(port)


def _status_json(snapshot: Snapshot) -> tuple[str, bytes]:
    from wiremesh.cli.cmd_status import to_json

    body = json.dumps(to_json(snapshot.health), indent=2) + "\n"
    return "application/json", body.encode()


def run_exporter(args: argparse.Namespace, ctx: Context) -> int:
    """``exporter``: serve until SIGTERM (exit 0) or Ctrl-C (exit 130)."""
    import asyncio
    import signal

    from wiremesh.ops.exporter import Exporter
    from wiremesh.ops.monitor import Monitor

    host, port = parse_listen(args.listen)
    file = ctx.inventory
    options = run_options(args, ctx, False)

    async def run() -> None:
        monitor = Monitor(
            file,
            options,
            interval=args.interval,
            host_timeout=args.host_timeout,
            stale_after=args.stale_after,
        )
        exporter = Exporter(monitor, args.scrape_timeout, {"/status.json": _status_json})
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        try:
            await exporter.serve(host, port, stop, lambda url: ctx.out.info(f"serving {url}"))
        except OSError as exc:
            raise ValidationError(
                f"cannot listen on {args.listen}: {exc.strerror or exc}",
                "pick another --listen address or port (is another exporter running?)",
            ) from None

    asyncio.run(run())
    ctx.out.info("stopped")
    return ExitStatus.OK
