"""Issue 3, "it must show" 2: after `lab down`, a failing test, a failed or a crashed `up`, nothing is left.

Each test checks every kind of resource explicitly (see ``assert_lab_gone``): namespaces, veths, the
bridge, mounts in any mount namespace, the lab's processes (hosts' PID 1, launchers, sshd, wireguard-go,
anything in a host), the neighbour-table sysctls, the machine record and the files in DIR.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.helpers import cli
from tests.integration.conftest import (
    LAB_WAIT,
    LabFactory,
    LabFootprint,
    assert_lab_gone,
    crash_up,
    sysctl_snapshot,
)
from wiremesh.lab import Lab, MachineRecord, down_dir, procs
from wiremesh.lab.state import LabState, ProcRef, machine_lock
from wiremesh.lab.sysctl import NEIGH_LIMITS

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[2]


def _busy(lab: Lab) -> None:
    """Give the lab more to clean up: wireguard-go, an ssh session's leftovers, a file in /etc."""
    lab.exec("lab1", ["sh", "-c", "wireguard-go wg0 2>/dev/null; echo x > /etc/wireguard/x"])
    subprocess.run(
        [*lab.ssh_argv("lab2", ["sh", "-c", "'sleep 600 >/dev/null 2>&1 &'"])],
        check=True,
        timeout=30,
    )


def test_sysctls_are_raised_while_the_lab_runs_and_restored_after(tmp_path: Path) -> None:
    lab = Lab.up(tmp_path / "lab", 1, wait=LAB_WAIT)
    footprint = LabFootprint.of(lab.dir)
    try:
        now = sysctl_snapshot()
        for key, wanted in NEIGH_LIMITS.items():
            if now[key] is not None:
                assert int(now[key] or 0) >= wanted, key
        record = MachineRecord.load()
        assert record is not None and record.dir == lab.dir
        assert record.sysctl_saved  # the defaults here (128/512/1024) are below what a lab needs
        for key, original in record.sysctl_saved.items():
            assert int(original) < NEIGH_LIMITS[key]
            assert footprint.sysctls[key] == original
    finally:
        lab.down()
    assert_lab_gone(footprint)


def test_down_removes_everything(tmp_path: Path) -> None:
    lab = Lab.up(tmp_path / "lab", 3, wait=LAB_WAIT)
    _busy(lab)
    footprint = LabFootprint.of(lab.dir)
    assert len(footprint.processes) >= 3 * 4  # launcher, PID 1, sleep, sshd per host, and more
    r = cli("lab", "down", "--dir", lab.dir)
    assert r.code == 0, r.err
    assert_lab_gone(footprint)
    assert not lab.dir.exists()  # the lab made the directory, so it removes it
    again = cli("lab", "down", "--dir", lab.dir)
    assert again.code == 0
    assert "nothing to do" in again.err


def test_down_keeps_files_it_did_not_make(tmp_path: Path) -> None:
    directory = tmp_path / "mine"
    directory.mkdir()
    (directory / "notes.txt").write_text("keep me")
    lab = Lab.up(directory, 1, wait=LAB_WAIT)
    footprint = LabFootprint.of(directory)
    lab.down()
    assert_lab_gone(footprint)
    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]


def test_an_exception_inside_the_with_block_tears_down(tmp_path: Path) -> None:
    footprint = None
    with pytest.raises(RuntimeError, match="on purpose"), Lab.up(tmp_path / "lab", 2) as lab:
        _busy(lab)
        footprint = LabFootprint.of(lab.dir)
        raise RuntimeError("fails on purpose")
    assert footprint is not None
    assert_lab_gone(footprint)


INNER_TEST = """
import json, os
from pathlib import Path

from tests.integration.conftest import LabFootprint, lab_factory  # noqa: F401 (a fixture)


def test_fails_midway(lab_factory):
    lab = lab_factory(2)
    lab.exec("lab1", ["sh", "-c", "wireguard-go wg0 2>/dev/null"])
    fp = LabFootprint.of(lab.dir)
    Path(os.environ["FOOTPRINT"]).write_text(json.dumps({
        "dir": str(fp.dir), "netns": fp.netns, "links": fp.links,
        "processes": [[p.pid, p.start] for p in fp.processes], "sysctls": fp.sysctls,
    }))
    assert False, "fails on purpose, midway"
"""


def test_a_test_that_fails_midway_leaves_nothing(tmp_path: Path) -> None:
    inner = tmp_path / "test_inner.py"
    inner.write_text(textwrap.dedent(INNER_TEST))
    report = tmp_path / "footprint.json"
    r = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
            *(f"--rootdir={REPO}", "-c", str(REPO / "pyproject.toml"), str(inner)),
        ],
        cwd=REPO,
        env={**os.environ, "FOOTPRINT": str(report), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "1 failed" in r.stdout, r.stdout + r.stderr
    assert "fails on purpose, midway" in r.stdout
    value = json.loads(report.read_text())
    footprint = LabFootprint(
        dir=Path(value["dir"]),
        netns=value["netns"],
        links=value["links"],
        processes=[ProcRef(pid, start) for pid, start in value["processes"]],
        sysctls=value["sysctls"],
    )
    assert footprint.processes
    assert_lab_gone(footprint)


@pytest.mark.parametrize("step", ["state", "network", "host:lab2", "ready", "files"])
def test_a_failing_up_removes_what_it_made(tmp_path: Path, step: str) -> None:
    seen: list[LabFootprint] = []

    def fail_at(where: str) -> None:
        if where == step:
            seen.append(LabFootprint.of(tmp_path / "lab"))
            raise RuntimeError(f"injected failure at {where}")

    with pytest.raises(RuntimeError, match="injected failure"):
        Lab.up(tmp_path / "lab", 3, wait=LAB_WAIT, checkpoint=fail_at)
    assert seen
    assert_lab_gone(seen[0])
    assert not (tmp_path / "lab").exists()


@pytest.mark.parametrize("step", ["state", "network", "host:lab1", "host:lab2", "ready"])
def test_down_after_a_crashed_up_removes_everything(tmp_path: Path, step: str) -> None:
    directory = tmp_path / "lab"
    crash_up(directory, step, "3")
    try:
        state = LabState.load(directory)
        assert state.status == "creating"
        footprint = LabFootprint.of(directory)
        # The half-made lab blocks another one, and says how to remove it.
        other = cli("lab", "up", "--hosts", "1", "--dir", tmp_path / "other")
        assert other.code == 1
        assert f"wiremesh lab down --dir {directory}" in other.err
        if step.startswith("host:"):
            assert footprint.processes  # hosts were running when it crashed
            listed = cli("lab", "ls", "--dir", directory)
            assert "incomplete" in listed.err
    finally:
        down_dir(directory)
    assert_lab_gone(footprint)
    assert not (tmp_path / "other").exists()


INNER_PASSING = """
from tests.integration.conftest import lab_factory  # noqa: F401 (a fixture)


def test_gets_a_lab(lab_factory):
    lab = lab_factory(1)
    assert lab.exec("lab1", ["true"]).returncode == 0
"""


def test_the_next_run_takes_down_a_lab_a_killed_run_left(tmp_path: Path) -> None:
    # A test run killed with its lab up (a CI timeout) must not fail every lab test of the next run.
    directory = tmp_path / "killed" / "lab"
    crash_up(directory, "ready", "3")
    footprint = LabFootprint.of(directory)
    try:
        assert footprint.processes and footprint.netns
        inner = tmp_path / "test_inner.py"
        inner.write_text(textwrap.dedent(INNER_PASSING))
        run = subprocess.run(
            [
                *(sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"),
                # The inner file is outside tests/, so load tests/conftest.py as pytest does there.
                *("-p", "tests.conftest", f"--rootdir={REPO}", "-c", str(REPO / "pyproject.toml")),
                str(inner),
            ],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert "1 passed" in run.stdout, run.stdout + run.stderr
        assert f"took down a lab an earlier, killed test run left in {directory}" in run.stdout
    finally:
        down_dir(directory)
    assert_lab_gone(footprint)


def test_a_stale_machine_record_does_not_block_a_new_lab(tmp_path: Path) -> None:
    # An `up` that died after claiming the machine but before its state file: nothing was made.
    # Never overwrite a real record (another lab on this machine): wait for the machine to be free.
    deadline = time.monotonic() + LAB_WAIT
    while True:
        with machine_lock():
            if MachineRecord.load() is None:
                MachineRecord(dir=tmp_path / "gone").save()
                break
        assert time.monotonic() < deadline, f"another lab runs: {MachineRecord.load()}"
        time.sleep(0.5)
    lab = Lab.up(tmp_path / "lab", 1, wait=LAB_WAIT)
    footprint = LabFootprint.of(lab.dir)
    lab.down()
    assert_lab_gone(footprint)
    assert MachineRecord.load() is None


def test_sigkilled_host_is_reported_and_cleaned(lab_factory: LabFactory) -> None:
    lab = lab_factory(2)
    init = procs.ref(lab.host("lab2").pid)
    assert init is not None
    os.kill(init.pid, signal.SIGKILL)
    assert procs.wait_gone([init]) == []
    listed = json.loads(cli("lab", "ls", "--dir", lab.dir, "--json").out)
    assert [(h["name"], h["running"]) for h in listed["hosts"]] == [("lab1", True), ("lab2", False)]
    r = cli("lab", "exec", "--dir", lab.dir, "lab2", "--", "true")
    assert r.code == 1
    assert "not running" in r.err
    footprint = LabFootprint.of(lab.dir)
    lab.down()
    assert_lab_gone(footprint)


# --- issue 5 topologies: NAT routers, site and LAN bridges, IPv6 --------------------------------------

TOPOLOGY: dict[str, object] = {"hosts": 1, "sites": {"a": 2}, "nats": {"home": 2}}
"""lab1 public, lab2-lab3 in site a, lab4-lab5 behind NAT router home."""


def _busy_topology(lab: Lab) -> None:
    """Leave something running in a site host and a NAT host (one started over ssh via the router's
    port forward), and conntrack state in the router."""
    lab.exec("lab2", ["sh", "-c", "wireguard-go wg0 2>/dev/null"])
    lab.exec("lab4", ["sh", "-c", "wireguard-go wg0 2>/dev/null; ping -c 1 -W 2 198.51.100.11"])
    subprocess.run(
        [*lab.ssh_argv("lab5", ["sh", "-c", "'sleep 600 >/dev/null 2>&1 &'"])],
        check=True,
        timeout=30,
    )


def _assert_topology_footprint(footprint: LabFootprint) -> None:
    assert "wm-nat-home" in footprint.netns
    assert {"wm-pub", "wm-site-a", "wm-lan-home", "wm-nat-home-w", "wm-nat-home-l"} <= set(
        footprint.links
    )


def test_down_removes_routers_bridges_and_everything(tmp_path: Path) -> None:
    lab = Lab.up(tmp_path / "lab", wait=LAB_WAIT, **TOPOLOGY)  # type: ignore[arg-type]
    _busy_topology(lab)
    footprint = LabFootprint.of(lab.dir)
    _assert_topology_footprint(footprint)
    r = cli("lab", "down", "--dir", lab.dir)
    assert r.code == 0, r.err
    assert_lab_gone(footprint)
    assert not lab.dir.exists()


def test_down_removes_an_ipv6_lab(tmp_path: Path) -> None:
    lab = Lab.up(tmp_path / "lab", 1, sites={"a": 1}, ipv6=True, wait=LAB_WAIT)
    footprint = LabFootprint.of(lab.dir)
    lab.down()
    assert_lab_gone(footprint)  # includes: no 2001:db8::1 left in the root namespace


@pytest.mark.parametrize("step", ["network", "routers", "host:lab4", "ready", "files"])
def test_a_failing_topology_up_removes_what_it_made(tmp_path: Path, step: str) -> None:
    seen: list[LabFootprint] = []

    def fail_at(where: str) -> None:
        if where == step:
            seen.append(LabFootprint.of(tmp_path / "lab"))
            raise RuntimeError(f"injected failure at {where}")

    with pytest.raises(RuntimeError, match="injected failure"):
        Lab.up(tmp_path / "lab", wait=LAB_WAIT, checkpoint=fail_at, **TOPOLOGY)  # type: ignore[arg-type]
    assert seen
    _assert_topology_footprint(seen[0])
    assert_lab_gone(seen[0])
    assert not (tmp_path / "lab").exists()


@pytest.mark.parametrize("step", ["network", "routers", "host:lab5"])
def test_down_after_a_crashed_topology_up_removes_everything(tmp_path: Path, step: str) -> None:
    directory = tmp_path / "lab"
    crash_up(directory, step, '1, sites={"a": 2}, nats={"home": 2}, wait=300', timeout=400)
    try:
        footprint = LabFootprint.of(directory)
        _assert_topology_footprint(footprint)
    finally:
        down_dir(directory)
    assert_lab_gone(footprint)
