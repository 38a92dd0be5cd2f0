"""Output for people (rich) and for scripts (``--json``).

Commands never print directly: they receive an :class:`Output` and call it, so tests can capture
everything the real entry point writes.
"""

from __future__ import annotations

import json
import sys
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


WIDEST = 250
"""The widest table printed off a terminal."""


class Output:
    """Where a command writes: a rich console on stdout, another on stderr."""

    def __init__(self, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> None:
        self._stdout = stdout if stdout is not None else sys.stdout
        self._stderr = stderr if stderr is not None else sys.stderr

    # The consoles are made on first use: importing rich costs start-up time that commands which
    # print nothing rich (render of a big mesh) should not pay.
    @cached_property
    def console(self) -> Console:
        """The rich console on stdout."""
        from rich.console import Console

        return Console(file=self._stdout, highlight=False, soft_wrap=True)

    @cached_property
    def err_console(self) -> Console:
        """The rich console on stderr."""
        from rich.console import Console

        return Console(file=self._stderr, highlight=False, soft_wrap=True)

    @property
    def interactive(self) -> bool:
        """True when stdout is a terminal (progress bars and prompts are allowed)."""
        return self.console.is_terminal

    @property
    def stderr_is_terminal(self) -> bool:
        """True when stderr is a terminal (progress goes there)."""
        return self.err_console.is_terminal

    def raw(self, text: str) -> None:
        """Write ``text`` to stdout exactly as given (configs, YAML)."""
        self._stdout.write(text)
        self._stdout.flush()

    def line(self, text: str = "", style: str | None = None) -> None:
        """Print one line of rich markup for people (escape user data with :func:`cell`)."""
        self.console.print(text, style=style)

    def table(self, table: Table) -> None:
        """Print a rich table. Off a terminal (a pipe, a log) the table gets the width it needs,
        up to :data:`WIDEST`, instead of 80 columns: nothing is folded or cut there."""
        if self.console.is_terminal:
            self.console.print(table)
            return
        from rich.measure import Measurement

        options = self.console.options.update(max_width=WIDEST)
        needed = Measurement.get(self.console, options, table).maximum
        width = self.console.width
        self.console.width = min(max(needed, width), WIDEST)  # print() clamps to console.width
        try:
            self.console.print(table)
        finally:
            self.console.width = width

    def json(self, value: Any) -> None:
        """Print ``value`` as JSON, the stable interface for scripts."""
        self._stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
        self._stdout.flush()

    def _plain_stderr(self) -> bool:
        # Without a terminal there are no colours to draw: plain writes, and no rich import (40 ms
        # of start-up for commands such as render that print two lines).
        if "err_console" in self.__dict__:
            return False
        isatty = getattr(self._stderr, "isatty", None)
        return not (isatty and isatty())

    def _err(self, markup: str, plain: str) -> None:
        if self._plain_stderr():
            self._stderr.write(plain + "\n")
            self._stderr.flush()
        else:
            self.err_console.print(markup)

    def info(self, text: str) -> None:
        """A message for people on stderr (kept off stdout so that it can be piped)."""
        self._err(escape(text) if not self._plain_stderr() else text, text)

    def warn(self, text: str) -> None:
        """A warning on stderr."""
        if self._plain_stderr():
            self._err("", f"warning: {text}")
        else:
            self._err(f"[yellow]warning:[/yellow] {escape(text)}", "")

    def error(self, text: str, hint: str | None = None) -> None:
        """An error on stderr, with the hint that says how to fix it."""
        if self._plain_stderr():
            self._err("", f"error: {text}" + (f"\n  hint: {hint}" if hint else ""))
            return
        self._err(f"[bold red]error:[/bold red] {escape(text)}", "")
        if hint:
            self._err(f"  [cyan]hint:[/cyan] {escape(hint)}", "")


def escape(text: str) -> str:
    """``text`` with rich markup characters escaped."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def cell(value: object) -> str:
    """A value for a table cell or a markup line, with rich markup characters escaped."""
    return escape("" if value is None else str(value))
