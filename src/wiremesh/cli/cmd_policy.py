"""``wiremesh policy check|show|verify``: the access policy (docs/policy.md).

Exit codes: ``check`` 0 when every test passes, 1 when one fails; ``verify`` 0 when every probe saw
what the policy says, 1 on any mismatch or a host that could not probe; 2 for usage errors and an
invalid inventory, as everywhere.
"""

from __future__ import annotations

import argparse
from typing import Any

from wiremesh.cli.args import int_range
from wiremesh.cli.cmd_converge import add_run_options, run_options
from wiremesh.cli.context import Context
from wiremesh.cli.output import cell
from wiremesh.errors import ExitStatus
from wiremesh.store.inventory_file import InventoryFile


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``policy`` and its subcommands."""
    policy = sub.add_parser("policy", help="the access policy: check its tests, show, verify live")
    psub = policy.add_subparsers(
        dest="policy_command", metavar="SUBCOMMAND", parser_class=type(policy)
    )
    psub.required = True
    c = psub.add_parser("check", help="evaluate every policy test (offline; no host is contacted)")
    c.add_argument("--json", action="store_true", help="machine-readable output")
    c.set_defaults(handler=run_check)
    s = psub.add_parser("show", help="print NODE's nftables table, as apply loads it")
    s.add_argument("name", metavar="NODE")
    s.set_defaults(handler=run_show)
    v = psub.add_parser(
        "verify",
        help="probe from the hosts over the overlay: allowed and denied as the policy says?",
    )
    v.add_argument("--json", action="store_true", help="machine-readable output")
    v.add_argument(
        "--probe-timeout",
        type=int_range(1, 60),
        default=3,
        metavar="S",
        help="seconds per probe (default 3)",
    )
    add_run_options(v)
    v.set_defaults(handler=run_verify)


def run_check(args: argparse.Namespace, ctx: Context) -> int:
    """``policy check``."""
    from wiremesh.ops.policy import check

    resolved, outcomes = check(InventoryFile(ctx.inventory_path))
    failed = [o for o in outcomes if not o.passed]
    if args.json:
        ctx.out.json(
            {
                "default": str(resolved.policy.default),
                "rules": len(resolved.rules),
                "tests": [
                    {"test": o.test.index, "passed": o.passed, "description": o.describe()}
                    for o in outcomes
                ],
            }
        )
    else:
        ctx.out.line(
            f"policy: default {resolved.policy.default}, {len(resolved.rules)} rule(s) in "
            f"evaluation order, {len(outcomes)} test(s)"
        )
        for outcome in outcomes:
            mark = "[green]pass[/green]" if outcome.passed else "[red]FAIL[/red]"
            ctx.out.line(f"  {mark} {cell(outcome.describe())}")
    return ExitStatus.FAILED if failed else ExitStatus.OK


def run_show(args: argparse.Namespace, ctx: Context) -> int:
    """``policy show NODE``."""
    from wiremesh.ops.policy import show

    firewall, text = show(InventoryFile(ctx.inventory_path), args.name)
    if firewall is None or text is None:
        ctx.out.info(f"{args.name}: the policy installs no table there (everything is allowed)")
        return ExitStatus.OK
    ctx.out.raw(text)
    return ExitStatus.OK


def _result_json(result: Any) -> dict[str, Any]:
    case = result.case
    return {
        "why": case.why,
        "from": case.source,
        "to": case.target,
        "address": str(case.address),
        "probe": str(case.probe),
        "expected": str(case.expected.action),
        "decided_by": case.expected.decided_by,
        "observed": str(result.observed),
        "result": result.result,
        "mismatch": result.mismatch,
    }


def run_verify(args: argparse.Namespace, ctx: Context) -> int:
    """``policy verify``."""
    from wiremesh.ops.policy import verify

    report = verify(
        InventoryFile(ctx.inventory_path), run_options(args, ctx, not args.json), args.probe_timeout
    )
    bad = report.mismatches
    if args.json:
        ctx.out.json(
            {
                "ok": not bad and not report.failed,
                "results": [_result_json(r) for r in report.results],
                "failed": report.failed,
            }
        )
    else:
        for result in report.results:
            if result.mismatch:
                mark = "[red]MISMATCH[/red]"
            elif str(result.observed) in ("allowed", "denied"):
                mark = "[green]ok[/green]"
            else:
                mark = "[dim]skip[/dim]"
            ctx.out.line(f"{mark} {cell(result.describe())}")
        for name, reason in report.failed.items():
            ctx.out.line(f"[red]FAILED[/red] {cell(name)}: {cell(reason)}")
        ctx.out.line(
            f"{len(report.results)} probe(s), {len(bad)} mismatch(es), "
            f"{len(report.failed)} host(s) could not probe"
        )
    return ExitStatus.FAILED if bad or report.failed else ExitStatus.OK
