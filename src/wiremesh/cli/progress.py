"""Progress for multi-host work: a rich progress bar on stderr when it is a terminal, else nothing."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from wiremesh.remote.fanout import NoProgress
from wiremesh.remote.fanout import Progress as ProgressProtocol


class RichProgress:
    """One transient bar per stage ("reading hosts 12/30 ...")."""

    def __init__(self, console: Console) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[failed]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task: TaskID | None = None
        self._failed = 0

    def start(self, label: str, total: int) -> None:
        """Show a bar for a new stage."""
        self._failed = 0
        if total == 0:
            return
        self._progress.start()
        self._task = self._progress.add_task(label, total=total, failed="")

    def advance(self, node: str, ok: bool) -> None:
        """One host done."""
        if self._task is None:
            return
        if not ok:
            self._failed += 1
        failed = f"[red]{self._failed} failed[/red]" if self._failed else ""
        self._progress.update(self._task, advance=1, failed=failed)

    def finish(self) -> None:
        """Remove the bar."""
        if self._task is not None:
            self._progress.remove_task(self._task)
            self._task = None
        self._progress.stop()


def progress_for(console: Console, enabled: bool) -> ProgressProtocol:
    """A progress display when ``enabled`` and the console is a terminal, else one that is silent."""
    if enabled and console.is_terminal:
        return RichProgress(console)
    return NoProgress()
