"""``wiremesh plan`` and ``wiremesh apply``."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from wiremesh.cli.args import int_range, seconds_arg
from wiremesh.cli.context import Context
from wiremesh.cli.output import Output, escape
from wiremesh.errors import ExitStatus, ValidationError, WiremeshError
from wiremesh.remote.limits import DEFAULT_PARALLEL

CHANGES_PRESENT = 2
"""``plan --detailed-exitcode``: there are changes (terraform's convention)."""

MAX_PARALLEL = 1024
"""More hosts at once than this only exhausts file descriptors (each connection needs a few)."""

# The SSH stack (asyncssh) is imported when a command talks to hosts, not at start-up.
if TYPE_CHECKING:
    from wiremesh.model.plan import Change
    from wiremesh.ops.mesh import RunOptions
    from wiremesh.ops.planning import HostResult, MeshPlan


def add_run_options(p: argparse.ArgumentParser) -> None:
    """Options of every command that talks to hosts."""
    p.add_argument(
        "--accept-new-host-keys",
        action="store_true",
        help="trust and record SSH host keys not yet in known_hosts (a changed key is still refused)",
    )
    p.add_argument(
        "--parallel",
        type=int_range(1, MAX_PARALLEL),
        default=DEFAULT_PARALLEL,
        metavar="N",
        help=f"hosts worked on at once (default {DEFAULT_PARALLEL})",
    )
    p.add_argument(
        "--connect-timeout",
        type=seconds_arg,
        default=15.0,
        metavar="S",
        help="SSH connect timeout in seconds (default 15)",
    )
    p.add_argument(
        "--command-timeout",
        type=seconds_arg,
        default=120.0,
        metavar="S",
        help="timeout of each host command in seconds (default 120)",
    )


def run_options(args: argparse.Namespace, ctx: Context, show_progress: bool = True) -> RunOptions:
    """The :class:`RunOptions` from the command line."""
    from wiremesh.cli.progress import progress_for
    from wiremesh.ops.mesh import RunOptions

    confirm_timeout = getattr(args, "confirm_timeout", 60)
    lock_timeout = getattr(args, "lock_timeout", 60.0)
    extra = None
    if getattr(args, "k3s", False):
        from wiremesh.ops.k3s import k3s_files

        extra = k3s_files
    return RunOptions(
        ssh_config=ctx.ssh_config,
        accept_new_host_keys=args.accept_new_host_keys,
        parallel=args.parallel,
        connect_timeout=args.connect_timeout,
        command_timeout=args.command_timeout,
        progress=progress_for(ctx.out.err_console, show_progress),
        extra_files=extra,
        lock_timeout=lock_timeout,
        confirm_timeout=confirm_timeout,
        trust_ssh_config=ctx.trust_ssh_config,
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``plan`` and ``apply``."""
    p = sub.add_parser("plan", help="show what apply would change on each host (reads hosts only)")
    p.add_argument("nodes", nargs="*", metavar="NODE", help="only these nodes (default: all)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--k3s", action="store_true", help="also plan /etc/rancher/k3s/config.yaml")
    p.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="exit 0 when there is nothing to change, 2 when there are changes, 1 on any error "
        "(as terraform's -detailed-exitcode; for scripts and drift checks)",
    )
    add_run_options(p)
    p.set_defaults(handler=run_plan)
    a = sub.add_parser("apply", help="bring every host to the inventory's state, live")
    a.add_argument("nodes", nargs="*", metavar="NODE", help="only these nodes (default: all)")
    a.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    a.add_argument(
        "--k3s",
        action="store_true",
        help="also write /etc/rancher/k3s/config.yaml on nodes with a k3s_role (see docs/k3s.md)",
    )
    a.add_argument(
        "--force",
        action="store_true",
        help="apply even where a host's own routes or addresses overlap the mesh network, or its "
        "interface belongs to another mesh",
    )
    a.add_argument(
        "--confirm-timeout",
        type=int_range(5, 3600),
        default=60,
        metavar="S",
        help="a guard change is undone by the host unless apply confirms it within S seconds "
        "over a new SSH connection (default 60)",
    )
    a.add_argument(
        "--lock-timeout",
        type=int_range(0, 86400),
        default=60,
        metavar="S",
        help="how long to wait for another wiremesh run's host locks (default 60)",
    )
    add_run_options(a)
    a.set_defaults(handler=run_apply)


def _sign(change: Change) -> str:
    from wiremesh.model.plan import AddPeer, RemovePeer, TearDown

    if isinstance(change, AddPeer):
        return "[green]+[/green]"
    if isinstance(change, RemovePeer | TearDown):
        return "[red]-[/red]"
    return "[yellow]~[/yellow]"


def print_plan(out: Output, mesh: MeshPlan) -> None:
    """The plan, host by host."""
    for host in mesh.hosts:
        label = f"[bold]{escape(host.node)}[/bold]" + (" (removed)" if host.removed else "")
        if host.error is not None:
            out.line(f"{label}  [red]cannot plan:[/red] {escape(host.error.reason)}")
            if host.error.hint:
                out.line(f"    [cyan]hint:[/cyan] {escape(host.error.hint)}")
        elif host.plan is None or host.plan.empty:
            out.line(f"{label}  [dim]up to date[/dim]")
            for conflict in host.plan.conflicts if host.plan else ():
                out.line(f"  [red]![/red] {escape(conflict)}")
            for note in host.plan.notes if host.plan else ():
                out.line(f"  [yellow]note:[/yellow] {escape(note)}")
        else:
            out.line(f"{label}  {len(host.plan.changes)} change(s)")
            for conflict in host.plan.conflicts:
                out.line(f"  [red]![/red] {escape(conflict)}")
            for change in host.plan.changes:
                out.line(f"  {_sign(change)} {escape(change.describe())}")
            for note in host.plan.notes:
                out.line(f"  [yellow]note:[/yellow] {escape(note)}")
    for name, key in mesh.key_updates.items():
        out.line(f"[dim]inventory: record public key of {escape(name)} ({key.b64[:10]}…)[/dim]")
    for name in mesh.skipped:
        out.line(
            f"[yellow]not a peer yet:[/yellow] {escape(name)} (no key: its host was not reachable)"
        )
    out.line(tally(mesh.hosts, planned=True))
    if mesh.conflicts:
        out.line(
            f"[red]{len(mesh.conflicts)} host(s) have networks that overlap the mesh:[/red] "
            "apply refuses unless --force"
        )


def _changes(host: HostResult, planned: bool) -> int:
    if planned:
        return len(host.plan.changes) if host.plan is not None else 0
    return len(host.done)


def tally(hosts: tuple[HostResult, ...], planned: bool) -> str:
    """The summary line of ``plan`` (``planned``) and of ``apply``, counted the same way: hosts
    with changes, the change records among them, hosts up to date, hosts that failed."""
    changing = [h for h in hosts if not h.failed and _changes(h, planned) > 0]
    current = [h for h in hosts if not h.failed and _changes(h, planned) == 0]
    total = sum(_changes(h, planned) for h in changing)
    verb, failed = ("to change", "unreadable") if planned else ("changed", "failed")
    return (
        f"{len(hosts)} host(s): {len(changing)} {verb} ({total} change(s)), "
        f"{len(current)} up to date, {sum(1 for h in hosts if h.failed)} {failed}"
    )


def _host_json(host: HostResult) -> dict[str, Any]:
    return {
        "name": host.node,
        "reachable": not host.failed,
        "removed": host.removed,
        "error": host.error.reason if host.error else None,
        "hint": host.error.hint if host.error else None,
        "conflicts": list(host.plan.conflicts) if host.plan else [],
        "notes": list(host.plan.notes) if host.plan else [],
        "changes": [
            {"kind": c.kind, "description": c.describe()}
            for c in (host.plan.changes if host.plan else ())
        ],
        "done": [{"kind": c.kind, "description": c.describe()} for c in host.done],
    }


def run_plan(args: argparse.Namespace, ctx: Context) -> int:
    """``plan``."""
    from wiremesh.ops.planning import plan

    try:
        mesh = plan(ctx.inventory, args.nodes, run_options(args, ctx, not args.json))
    except WiremeshError as exc:
        if args.detailed_exitcode:
            exc.exit_code = ExitStatus.FAILED  # 2 means "changes present" here
        raise
    if args.json:
        ctx.out.json(
            {
                "up_to_date": mesh.empty and not mesh.failed,
                "hosts": [_host_json(h) for h in mesh.hosts],
                "key_updates": {k: str(v) for k, v in mesh.key_updates.items()},
                "skipped": list(mesh.skipped),
            }
        )
    else:
        print_plan(ctx.out, mesh)
    if mesh.failed:
        return ExitStatus.FAILED
    if args.detailed_exitcode and (not mesh.empty or mesh.key_updates):
        return CHANGES_PRESENT
    return ExitStatus.OK


def _confirm(ctx: Context, assume_yes: bool) -> Any:
    def confirm(mesh: MeshPlan) -> bool:
        print_plan(ctx.out, mesh)
        if assume_yes:
            return True
        if not (sys.stdin.isatty() and ctx.out.interactive):
            raise ValidationError(
                "apply needs confirmation, and there is no terminal to ask on",
                "review 'wiremesh plan', then run 'wiremesh apply --yes'",
            )
        answer = ctx.out.console.input("Apply these changes? [y/N] ")
        return answer.strip().lower() in ("y", "yes")

    return confirm


def run_apply(args: argparse.Namespace, ctx: Context) -> int:
    """``apply``."""
    from wiremesh.ops.converge import apply

    report = apply(
        ctx.inventory,
        args.nodes,
        run_options(args, ctx),
        _confirm(ctx, args.yes),
        force=args.force,
    )
    out = ctx.out
    if not report.applied:
        if report.plan.empty:
            print_plan(out, report.plan)
            out.line("[green]nothing to do:[/green] every reachable host is up to date")
            return ExitStatus.FAILED if report.plan.failed else ExitStatus.OK
        out.line("not applied")
        return ExitStatus.FAILED
    for host in report.hosts:
        name = escape(host.node)
        if host.error is not None:
            out.line(f"[red]FAILED[/red] {name}: {escape(host.error.reason)}")
            if host.error.hint:
                out.line(f"    [cyan]hint:[/cyan] {escape(host.error.hint)}")
        elif host.done:
            out.line(f"[green]changed[/green] {name}: {len(host.done)} change(s)")
        else:
            out.line(f"[dim]unchanged[/dim] {name}")
    out.line(tally(report.hosts, planned=False))
    failed = report.failed
    if failed:
        out.line(
            f"{len(failed)} host(s) failed; the others converged. Run 'wiremesh apply' again "
            "once the failed ones are fixed."
        )
        return ExitStatus.FAILED
    out.line("[green]applied:[/green] every host converged")
    return ExitStatus.OK
