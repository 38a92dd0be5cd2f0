"""Kernel limits the lab raises while it runs, and restores exactly afterwards.

The neighbour (ARP/NDP) table is one table for the whole kernel, shared by every network namespace, and
its garbage-collection thresholds are read in the root namespace (ip-sysctl.rst, ``neigh/default``). A
50-host full mesh needs about 5,000 entries; the defaults (128/512/1024) make pings fail with "No buffer
space available" (design.md section 4). The IPv6 table has its own thresholds (for a dual-stack lab).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

PROC_SYS = Path("/proc/sys")

NEIGH_LIMITS: dict[str, int] = {
    f"net.{family}.neigh.default.gc_thresh{n}": value
    for family in ("ipv4", "ipv6")
    for n, value in ((1, 4096), (2, 8192), (3, 16384))
}
"""What the lab needs at least; 16384 for gc_thresh3 was enough for 50 hosts here."""


def _path(key: str, root: Path) -> Path:
    return root / key.replace(".", "/")


def read(key: str, root: Path = PROC_SYS) -> str | None:
    """The value of sysctl ``key``, or ``None`` if the kernel does not have it (e.g. IPv6 disabled)."""
    try:
        return _path(key, root).read_text().strip()
    except FileNotFoundError:
        return None


def write(key: str, value: str, root: Path = PROC_SYS) -> None:
    """Set sysctl ``key`` to ``value``."""
    _path(key, root).write_text(f"{value}\n")


def plan_raise(current: Mapping[str, str | None], wanted: Mapping[str, int]) -> dict[str, str]:
    """Which keys to raise: those below ``wanted``. Returns their *current* values (to restore later).

    A limit that is already higher is left alone, so the lab never lowers a machine's own tuning.
    """
    originals = {}
    for key, value in wanted.items():
        now = current.get(key)
        if now is None:
            continue
        try:
            if int(now) >= value:
                continue
        except ValueError:
            continue
        originals[key] = now
    return originals


def raise_limits(
    wanted: Mapping[str, int] = NEIGH_LIMITS, root: Path = PROC_SYS
) -> tuple[dict[str, str], dict[str, int]]:
    """The sysctls to raise: (original values, new values). Nothing is written; see :func:`apply`."""
    current = {key: read(key, root) for key in wanted}
    originals = plan_raise(current, wanted)
    return originals, {key: wanted[key] for key in originals}


def apply(values: Mapping[str, int | str], root: Path = PROC_SYS) -> None:
    """Write ``values``; gc_thresh3 before 2 before 1 when raising, so the kernel never sees 1 > 3."""
    for key in sorted(values, reverse=True):
        write(key, str(values[key]), root)


def restore(originals: Mapping[str, str], root: Path = PROC_SYS) -> list[str]:
    """Write back ``originals`` (lowest threshold first); returns the keys that could not be written."""
    failed = []
    for key in sorted(originals):
        try:
            write(key, originals[key], root)
        except OSError:
            failed.append(key)
    return failed
