"""Processes the lab started: identify them safely, kill them by PID, and check that they are gone.

A PID alone is not an identity (PIDs are reused), so every recorded process carries its start time
(field 22 of /proc/PID/stat, proc(5)); a PID whose start time differs is someone else's and is left alone.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from wiremesh.lab.state import ProcRef

PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may contain spaces or ')': split after the last ')'.
    rest = text[text.rindex(")") + 2 :].split()
    return rest  # rest[0] is field 3 (state)


def start_time(pid: int) -> int | None:
    """The start time of ``pid`` in clock ticks after boot, or ``None`` if there is no such process."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None  # field 22 is rest[22 - 3]


def ref(pid: int) -> ProcRef | None:
    """A :class:`ProcRef` for a running ``pid``."""
    start = start_time(pid)
    return ProcRef(pid, start) if start is not None else None


def is_alive(proc: ProcRef) -> bool:
    """True if ``proc`` still runs: same PID, same start time, and not a zombie (a zombie holds nothing)."""
    fields = _stat_fields(proc.pid)
    if fields is None or int(fields[19]) != proc.start:
        return False
    return fields[0] not in ("Z", "X")


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (/proc/PID/task/*/children, proc(5))."""
    result: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except FileNotFoundError:
        return result
    for task in tasks:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            result.extend(int(x) for x in (task / "children").read_text().split())
    return result


def ns_pid(pid: int) -> int | None:
    """The PID of ``pid`` inside its own (innermost) PID namespace, from the ``NSpid`` status line."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return int(line.split()[-1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def pids_in_netns(netns_file: Path) -> list[int]:
    """PIDs of every process whose network namespace is ``netns_file`` (like ``ip netns pids``)."""
    try:
        st = netns_file.stat()
    except FileNotFoundError:
        return []
    wanted = (st.st_dev, st.st_ino)
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ns = (entry / "ns" / "net").stat()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if (ns.st_dev, ns.st_ino) == wanted:
            found.append(int(entry.name))
    return found


def pids_with_argument(markers: Iterable[str]) -> list[int]:
    """PIDs of processes (not this one) with a command-line argument that contains one of ``markers``."""
    wanted = [m.encode() for m in markers if m]
    if not wanted:
        return []
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if any(m in arg for arg in args for m in wanted):
            found.append(int(entry.name))
    return found


def kill(procs: Iterable[ProcRef]) -> None:
    """SIGKILL each process that is still the one we recorded.

    SIGKILL, because ``unshare --fork`` and a PID namespace's init ignore SIGTERM (design.md section 4);
    killing a host's PID 1 makes the kernel kill everything else in its PID namespace.
    """
    for proc in procs:
        if is_alive(proc):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)


def wait_gone(procs: Iterable[ProcRef], timeout: float = 10.0) -> list[ProcRef]:
    """Wait until none of ``procs`` is alive; returns those still alive after ``timeout`` seconds."""
    pending = [p for p in procs if is_alive(p)]
    deadline = time.monotonic() + timeout
    while pending and time.monotonic() < deadline:
        time.sleep(0.02)
        pending = [p for p in pending if is_alive(p)]
    return pending
