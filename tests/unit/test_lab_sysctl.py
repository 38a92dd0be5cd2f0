"""Raising and restoring the neighbour-table limits, against a fake /proc/sys."""

from __future__ import annotations

from pathlib import Path

from wiremesh.lab import sysctl


def _fake(root: Path, values: dict[str, str]) -> None:
    for key, value in values.items():
        path = root / key.replace(".", "/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{value}\n")


def test_raise_only_what_is_lower_and_restore_exactly(tmp_path: Path) -> None:
    _fake(
        tmp_path,
        {
            "net.ipv4.neigh.default.gc_thresh1": "128",
            "net.ipv4.neigh.default.gc_thresh2": "512",
            "net.ipv4.neigh.default.gc_thresh3": "32768",  # already higher: left alone
        },
    )  # no ipv6 directory: a kernel without IPv6
    originals, raised = sysctl.raise_limits(root=tmp_path)
    assert originals == {
        "net.ipv4.neigh.default.gc_thresh1": "128",
        "net.ipv4.neigh.default.gc_thresh2": "512",
    }
    assert raised == {
        "net.ipv4.neigh.default.gc_thresh1": 4096,
        "net.ipv4.neigh.default.gc_thresh2": 8192,
    }
    sysctl.apply(raised, root=tmp_path)
    assert sysctl.read("net.ipv4.neigh.default.gc_thresh2", tmp_path) == "8192"
    assert sysctl.read("net.ipv4.neigh.default.gc_thresh3", tmp_path) == "32768"
    assert sysctl.restore(originals, root=tmp_path) == []
    assert sysctl.read("net.ipv4.neigh.default.gc_thresh1", tmp_path) == "128"
    assert sysctl.read("net.ipv4.neigh.default.gc_thresh2", tmp_path) == "512"
    assert sysctl.read("net.ipv6.neigh.default.gc_thresh1", tmp_path) is None


def test_the_limits_cover_both_families() -> None:
    assert sorted(sysctl.NEIGH_LIMITS) == sorted(
        f"net.{f}.neigh.default.gc_thresh{n}" for f in ("ipv4", "ipv6") for n in (1, 2, 3)
    )
    assert sysctl.NEIGH_LIMITS["net.ipv4.neigh.default.gc_thresh3"] >= 16384
