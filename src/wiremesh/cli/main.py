"""The entry point: ``main(argv, env) -> ExitStatus`` and the one top-level error handler.

Tests call :func:`main` directly, exactly as the console script does (httpie's ``core.py`` pattern).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Mapping, Sequence
from typing import IO, Protocol

from wiremesh import __version__
from wiremesh.cli.context import Context
from wiremesh.cli.output import Output
from wiremesh.errors import ExitStatus, WiremeshError


class CommandModule(Protocol):
    """A CLI command module: it adds its parser and sets ``handler`` on it."""

    def register(self, sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None: ...


def _command_modules() -> list[CommandModule]:
    from wiremesh.cli import commands

    return commands.MODULES


class _Parser(argparse.ArgumentParser):
    """argparse, but errors name the command and say how to get help (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(ExitStatus.USAGE, f"error: {message}\n  hint: run '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, global options first."""
    parser = _Parser(
        prog="wiremesh",
        description="A WireGuard full mesh from one inventory file, over SSH, with no agent.",
    )
    parser.add_argument("--version", action="version", version=f"wiremesh {__version__}")
    parser.add_argument(
        "-f",
        "--file",
        metavar="PATH",
        help="inventory file (default: $WIREMESH_FILE or ./wiremesh.toml)",
    )
    parser.add_argument(
        "--ssh-config",
        metavar="PATH",
        help="OpenSSH client config to use (default: the inventory's ssh_config, else ~/.ssh/config)",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    sub.required = True
    for module in _command_modules():
        module.register(sub)
    return parser


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run wiremesh with ``argv`` (without the program name) and return its exit status."""
    env = dict(os.environ) if env is None else env
    argv = list(sys.argv[1:] if argv is None else argv)
    out = Output(stdout, stderr)
    parser = build_parser()
    real_stderr = sys.stderr
    try:
        if stderr is not None:
            sys.stderr = stderr  # argparse writes its usage errors to sys.stderr
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version, usage errors
            code = exc.code
            return int(code) if isinstance(code, int) else ExitStatus.USAGE
    finally:
        sys.stderr = real_stderr

    if args.debug:
        logging.basicConfig(level=logging.DEBUG, stream=stderr or sys.stderr)
    ssh_config = args.ssh_config or env.get("WIREMESH_SSH_CONFIG")
    from pathlib import Path

    ctx = Context(
        env=env,
        out=out,
        debug=args.debug,
        inventory_path=Context.inventory_from(args.file, env),
        ssh_config=Path(ssh_config) if ssh_config else None,
    )
    try:
        return int(args.handler(args, ctx))
    except WiremeshError as exc:
        if args.debug:
            out.err_console.print(traceback.format_exc(), markup=False)
        out.error(exc.message, exc.hint)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        out.error("interrupted")
        return 130
    except Exception as exc:  # the one place that catches everything: a bug, shown plainly
        if args.debug:
            out.err_console.print(traceback.format_exc(), markup=False)
        out.error(
            f"unexpected {type(exc).__name__}: {exc}",
            "this is a bug in wiremesh; run again with --debug and report the traceback",
        )
        return int(ExitStatus.FAILED)


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())
