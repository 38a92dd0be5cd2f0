"""Run one coroutine per host, in parallel with a bound, reporting progress and collecting failures.

A failure on one host never stops the others: its :class:`HostError` is returned in its place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Protocol, TypeVar

from wiremesh.remote.limits import DEFAULT_PARALLEL
from wiremesh.remote.ssh import HostError

T = TypeVar("T")


class Progress(Protocol):
    """Where multi-host work reports progress (a rich progress bar on a TTY, or nothing)."""

    def start(self, label: str, total: int) -> None:
        """A new stage of ``total`` hosts begins."""

    def advance(self, node: str, ok: bool) -> None:
        """One host finished its part of the stage."""

    def finish(self) -> None:
        """The stage is over."""


class NoProgress:
    """Progress that shows nothing (no TTY, tests, --json)."""

    def start(self, label: str, total: int) -> None:
        """Nothing."""

    def advance(self, node: str, ok: bool) -> None:
        """Nothing."""

    def finish(self) -> None:
        """Nothing."""


async def fan_out(
    nodes: Iterable[str],
    work: Callable[[str], Awaitable[T]],
    *,
    limit: int = DEFAULT_PARALLEL,
    progress: Progress | None = None,
    label: str = "working",
) -> dict[str, T | HostError]:
    """``work(node)`` for every node, at most ``limit`` at once; results (or errors) by node."""
    names = list(nodes)
    progress = progress or NoProgress()
    gate = asyncio.Semaphore(max(1, limit))
    results: dict[str, T | HostError] = {}

    async def one(node: str) -> None:
        async with gate:
            try:
                results[node] = await work(node)
            except HostError as exc:
                results[node] = exc
        progress.advance(node, not isinstance(results[node], HostError))

    progress.start(label, len(names))
    try:
        await asyncio.gather(*(one(n) for n in names))
    finally:
        progress.finish()
    return {n: results[n] for n in names if n in results}
