"""Integration-tier fixtures: lab hosts that are always torn down, and checks that nothing is left.

Use ``lab`` (module scope: one 3-host lab shared by a module's tests) or ``lab_factory`` (function scope:
``lab_factory(hosts=2)`` makes a lab in the test's tmp dir; every lab it made goes down after the test,
passed or failed). Only one lab runs on a machine at a time, so a module uses one or the other.

Tests marked ``root`` fail, not skip, when not run as root: CI runs them as root, and a skipped
integration tier would hide that nothing was tested.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from ipaddress import ip_interface, ip_network
from pathlib import Path

import pytest

from wiremesh.lab import Lab, MachineRecord, down_dir, procs
from wiremesh.lab.network import existing_links, existing_netns
from wiremesh.lab.prereq import PROGRAMS, find_program
from wiremesh.lab.state import LabState, ProcRef, machine_lock
from wiremesh.lab.sysctl import NEIGH_LIMITS, read
from wiremesh.lab.teardown import vm_markers, vm_processes

LAB_WAIT = 300.0
"""Seconds a fixture waits for another lab on the machine (someone else's test run) to go away."""

LAB_NETNS = re.compile(r"^wm-(lab\d+|nat-.+)$")
"""Hosts' and NAT routers' namespaces."""
LAB_LINK = re.compile(r"^wm-(pub|lab\d+-.+|site-.+|lan-.+|nat-.+-[wl])$")
"""The public bridge, hosts' veths and VMs' taps, site bridges, NAT LAN bridges, NAT routers' veths."""
LAB_RANGES = [
    ip_network(n) for n in ("198.51.100.0/24", "203.0.113.0/24", "192.0.2.64/26", "192.0.2.128/25")
]
"""Where lab addresses live (192.0.2.0/26 holds this machine's own uplink, never the lab's)."""
LAB_RANGES6 = [ip_network("2001:db8::/64")]
ROOT_SYSCTLS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding")
"""Sysctls of the root namespace that a lab must never change (NAT routers forward in their own)."""


@pytest.fixture(autouse=True)
def _root_tier(request: pytest.FixtureRequest) -> None:
    """Fail a ``root`` test at once, with the reason, when the machine cannot run it."""
    if request.node.get_closest_marker("root") is None:
        return
    if os.geteuid() != 0:
        pytest.fail(
            "integration tests need root (namespaces, bridges, wireguard-go): run them as root, "
            "as CI does; select the other tiers with `pytest tests/unit tests/golden`",
            pytrace=False,
        )
    missing = [f"{p} ({pkg})" for p, pkg in PROGRAMS.items() if find_program(p) is None]
    if missing:
        pytest.fail(
            f"integration tests need: {', '.join(missing)}; run ./scripts/install-deps",
            pytrace=False,
        )


def sysctl_snapshot() -> dict[str, str | None]:
    """The current values of the sysctls a lab raises."""
    return {key: read(key) for key in NEIGH_LIMITS}


def root_sysctls() -> dict[str, str | None]:
    """The root namespace's forwarding switches (which no lab may touch)."""
    return {key: read(key) for key in ROOT_SYSCTLS}


def root_lab_addresses() -> list[str]:
    """Addresses of the root namespace inside the lab's ranges (``ip -j addr``)."""
    proc = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True)
    found = []
    for link in json.loads(proc.stdout):
        for a in link.get("addr_info", []):
            address = ip_interface(f"{a['local']}/{a['prefixlen']}")
            if any(address.ip in net for net in (*LAB_RANGES, *LAB_RANGES6)):
                found.append(f"{address} dev {link['ifname']}")
    return found


def expected_sysctls(directory: Path) -> dict[str, str | None]:
    """What the sysctls must be after the lab in ``directory`` is down: its saved originals."""
    now = sysctl_snapshot()
    record = MachineRecord.load()
    if record is not None and record.dir == directory:
        now.update(record.sysctl_saved)
    return now


@dataclass
class LabFootprint:
    """Everything of one lab to check after it went down: names, processes, paths."""

    dir: Path
    netns: list[str]
    links: list[str]
    processes: list[ProcRef] = field(default_factory=list)
    sysctls: dict[str, str | None] = field(default_factory=dict)
    """The values the neighbour-table sysctls must have once the lab is down (the originals)."""
    root: dict[str, str | None] = field(default_factory=root_sysctls)
    """The root namespace's forwarding sysctls, which must never change."""
    taps: list[str] = field(default_factory=list)
    """VMs' taps (also in ``links``: checked by name as links, and here as a kind of their own)."""
    vm_files: list[Path] = field(default_factory=list)
    """VMs' overlays, identity disks, monitor and ssh control sockets."""
    vm_markers: list[str] = field(default_factory=list)
    """Strings on the command line of any VM process of the lab (QEMU, ssh control masters)."""

    @staticmethod
    def of(directory: Path) -> LabFootprint:
        """Read the footprint from the lab's state file, with every process now in its namespaces
        and every VM process (recorded or found by its command line)."""
        state = LabState.load(directory)
        found = [h.init for h in state.hosts if h.init] + [
            h.launcher for h in state.hosts if h.launcher
        ]
        for ns in state.netns:
            for pid in procs.pids_in_netns(Path("/run/netns") / ns):
                ref = procs.ref(pid)
                if ref:
                    found.append(ref)
        found += vm_processes(state)
        vm_files = []
        for v in state.vms:
            vm_dir = state.dir / v.dir
            vm_files += [
                vm_dir / "disk.qcow2",
                vm_dir / "identity.tar",
                Path(v.qmp),
                Path(v.control),
            ]
        return LabFootprint(
            dir=directory.absolute(),
            netns=list(state.netns),
            links=[*state.bridges, *state.veths, *state.taps],
            processes=found,
            sysctls=expected_sysctls(directory.absolute()),
            taps=list(state.taps),
            vm_files=vm_files,
            vm_markers=vm_markers(state),
        )


def mounts_mentioning(text: str) -> list[str]:
    """Mount entries, in any process's mount namespace, whose line mentions ``text``."""
    hits = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            lines = (entry / "mountinfo").read_text().splitlines()
        except OSError:
            continue
        hits += [f"pid {entry.name}: {line}" for line in lines if text in line]
    return hits


def qemu_processes_mentioning(directory: Path) -> list[str]:
    """QEMU processes whose command line mentions ``directory`` (a lab's VMs)."""
    found = []
    for pid in procs.pids_with_argument([str(directory) + "/"]):
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"qemu-system-x86_64"):
            found.append(f"{pid}: {b' '.join(args).decode(errors='replace')[:200]}")
    return found


def assert_lab_gone(footprint: LabFootprint) -> None:
    """Check each kind of resource explicitly: namespaces, veths, bridge, mounts, processes, sysctls,
    and for VMs: QEMU processes and ssh masters, taps, overlays and identity disks, sockets."""
    netns = existing_netns()
    assert not [n for n in footprint.netns if n in netns], f"netns left: {netns}"
    assert not [n for n in netns if LAB_NETNS.match(n)], f"lab netns left: {netns}"
    links = existing_links()
    assert not [n for n in footprint.links if n in links], f"links left: {links}"
    assert not [n for n in links if LAB_LINK.match(n)], f"lab links (veth/bridge) left: {links}"
    assert not mounts_mentioning(str(footprint.dir)), mounts_mentioning(str(footprint.dir))
    for prefix in ("/run/netns/wm-lab", "/run/netns/wm-nat"):
        assert not mounts_mentioning(prefix), mounts_mentioning(prefix)
    alive = [p.pid for p in footprint.processes if procs.is_alive(p)]
    assert not alive, f"lab processes still alive: {alive}"
    assert not [t for t in footprint.taps if t in links], f"taps left: {links}"
    left = [str(p) for p in footprint.vm_files if p.exists() or p.is_symlink()]
    assert not left, f"VM files (overlays, identity disks, sockets) left: {left}"
    strays = procs.pids_with_argument(footprint.vm_markers)
    assert not strays, f"VM processes (QEMU, ssh masters) still alive: {strays}"
    assert not qemu_processes_mentioning(footprint.dir), qemu_processes_mentioning(footprint.dir)
    record = MachineRecord.load()
    assert record is None or record.dir != footprint.dir, "machine record still names the lab"
    if record is None:
        assert sysctl_snapshot() == footprint.sysctls, "sysctls not restored"
    else:  # another lab (another test run) came up since: it must have seen our originals
        seen = {k: record.sysctl_saved.get(k, v) for k, v in sysctl_snapshot().items()}
        assert seen == footprint.sysctls, "sysctls were not restored before the next lab"
    assert root_sysctls() == footprint.root, "the root namespace's forwarding sysctls changed"
    with machine_lock():  # `lab up` holds it from its machine record to its last address
        if MachineRecord.load() is None:  # no lab runs: the root has nothing in the lab's ranges
            assert not root_lab_addresses(), root_lab_addresses()
    assert not (footprint.dir / "lab.json").exists(), "state file left"
    assert not (footprint.dir / "hosts").exists(), "host files left"


CRASH_UP = """
import os, signal, sys
from pathlib import Path
from wiremesh.lab import Lab

def crash_at(where):
    if where == sys.argv[2]:
        os.kill(os.getpid(), signal.SIGKILL)  # a crash: no finally, no cleanup

Lab.up(Path(sys.argv[1]), {up_args}, checkpoint=crash_at)
"""


def crash_up(directory: Path, step: str, up_args: str, timeout: float = 120) -> None:
    """Run ``Lab.up(directory, <up_args>)`` in a child process that SIGKILLs itself at ``step``."""
    r = subprocess.run(
        [sys.executable, "-c", CRASH_UP.format(up_args=up_args), str(directory), step],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert r.returncode == -signal.SIGKILL, r.stderr


LabFactory = Callable[..., Lab]


@pytest.fixture
def lab_factory(tmp_path: Path) -> Iterator[LabFactory]:
    """``make(hosts=3, name="lab", **up_options) -> Lab`` in ``tmp_path/name``; all go down afterwards."""
    made: list[Path] = []

    def make(hosts: int = 3, name: str = "lab", **options: object) -> Lab:
        directory = tmp_path / name
        made.append(directory)
        return Lab.up(directory, hosts, wait=LAB_WAIT, **options)  # type: ignore[arg-type]

    try:
        yield make
    finally:
        errors = []
        for directory in reversed(made):
            try:
                down_dir(directory)
            except Exception as exc:
                errors.append(f"{directory}: {exc}")
        if errors:
            pytest.fail("lab teardown failed: " + "; ".join(errors), pytrace=False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One 3-host lab shared by the tests of a module, taken down after the module."""
    if os.geteuid() != 0:
        pytest.fail("the lab fixture needs root", pytrace=False)
    directory = tmp_path_factory.mktemp("lab") / "lab"
    made = Lab.up(directory, 3, wait=LAB_WAIT)
    try:
        yield made
    finally:
        made.down()
