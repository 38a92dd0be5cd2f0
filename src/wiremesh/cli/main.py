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
from wiremesh.cli.args import path_arg
from wiremesh.cli.context import Context
from wiremesh.cli.output import Output
from wiremesh.errors import ExitStatus, WiremeshError, quote


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
        type=path_arg,
        metavar="PATH",
        help="inventory file (default: $WIREMESH_FILE or ./wiremesh.toml)",
    )
    parser.add_argument(
        "--ssh-config",
        type=path_arg,
        metavar="PATH",
        help="OpenSSH client config to use (default: the inventory's ssh_config, else ~/.ssh/config)",
    )
    parser.add_argument(
        "--trust-ssh-config",
        action="store_true",
        help="allow the inventory's ssh_config to run local commands (ProxyCommand, Match exec...); "
        "also $WIREMESH_TRUST_SSH_CONFIG=1",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub: argparse._SubParsersAction[argparse.ArgumentParser] = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_Parser
    )
    sub.required = True
    for module in _command_modules():
        module.register(sub)
    return parser


INTERRUPTED = 130
"""The exit code of a run stopped by Ctrl-C (128 + SIGINT), as shells report it."""

TRUE_WORDS = ("1", "yes", "true", "on")


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    stdout: IO[str] | None = None,
    stderr: IO[str] | None = None,
) -> int:
    """Run wiremesh with ``argv`` (without the program name) and return its exit status.

    Nothing escapes as a traceback: a :class:`WiremeshError` is printed with its hint, Ctrl-C at any
    moment (also while the command line is parsed) gives exit code 130, anything else is reported as
    a bug (with the traceback only under ``--debug``).
    """
    env = dict(os.environ) if env is None else env
    argv = list(sys.argv[1:] if argv is None else argv)
    out = Output(stdout, stderr)
    debug = "--debug" in argv
    try:
        return _run(argv, env, out, stderr)
    except KeyboardInterrupt:
        out.error("interrupted")
        return INTERRUPTED
    except Exception as exc:  # the one place that catches everything: a bug, shown plainly
        if debug:
            out.err_console.print(traceback.format_exc(), markup=False)
        out.error(
            f"unexpected {type(exc).__name__}: {quote(str(exc), 200)}",
            "this is a bug in wiremesh; run again with --debug and report the traceback",
        )
        return int(ExitStatus.FAILED)


def _run(argv: list[str], env: Mapping[str, str], out: Output, stderr: IO[str] | None) -> int:
    parser = build_parser()
    real_stderr = sys.stderr
    try:
        if stderr is not None:
            sys.stderr = stderr  # argparse writes its usage errors to sys.stderr
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version, usage errors
            code = exc.code
            status = int(code) if isinstance(code, int) else ExitStatus.USAGE
            # 'plan --detailed-exitcode' keeps 2 for "changes present": a usage error is then 1.
            if status == ExitStatus.USAGE and "--detailed-exitcode" in argv:
                return int(ExitStatus.FAILED)
            return status
    finally:
        sys.stderr = real_stderr

    if args.debug:
        logging.basicConfig(level=logging.DEBUG, stream=stderr or sys.stderr)
    ssh_config = args.ssh_config or env.get("WIREMESH_SSH_CONFIG")
    from pathlib import Path

    trust = args.trust_ssh_config or env.get("WIREMESH_TRUST_SSH_CONFIG", "").lower() in TRUE_WORDS
    ctx = Context(
        env=env,
        out=out,
        debug=args.debug,
        inventory_path=Context.inventory_from(args.file, env),
        ssh_config=Path(ssh_config) if ssh_config else None,
        trust_ssh_config=trust,
    )
    try:
        return int(args.handler(args, ctx))
    except WiremeshError as exc:
        if args.debug:
            out.err_console.print(traceback.format_exc(), markup=False)
        out.error(exc.message, exc.hint)
        return int(exc.exit_code)


def entry() -> None:
    """Console-script entry point."""
    try:
        code = main()
    except KeyboardInterrupt:  # between main's return and here, or while it printed
        code = INTERRUPTED
    sys.exit(code)
