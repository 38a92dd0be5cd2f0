"""VM tier fixtures: one lab of namespace hosts and QEMU VMs for the whole session, reset between tests
by VM snapshots instead of reboots.

The lab (:func:`vm_lab`) has two namespace hosts (lab1, lab2: wireguard-go, no systemd) and three VMs
(lab3..lab5: the WireGuard kernel module, systemd), booted once. Right after boot every VM is saved as
snapshot ``fresh``; a 3-VM mesh, once applied, as ``mesh3``. A test asks for one of them:

- ``fresh``: the VMs as booted, the namespace hosts without WireGuard, the inventory as `lab up` wrote it;
- ``meshed``: lab3..lab5 in a verified full mesh (the inventory without lab1 and lab2).

``loadvm`` takes under a second per VM; a reboot takes half a minute or more. Only one lab runs on a
machine, so every test of this tier runs after all other tests of the session (see
:func:`pytest_collection_modifyitems`), and those that make labs of their own (the cleanup tests) run
before the shared lab comes up.

Tests marked ``vm`` fail, not skip, when the machine cannot run them: CI runs them, and a skipped tier
would hide that nothing was tested.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Result, cli
from tests.integration.conftest import LAB_WAIT, LabFootprint, assert_lab_gone
from wiremesh.lab import Lab
from wiremesh.lab import image as vmimage
from wiremesh.lab.prereq import PROGRAMS, find_program
from wiremesh.lab.vm import VM_PROGRAMS
from wiremesh.remote import scripts

NAMESPACE_HOSTS = ("lab1", "lab2")
VMS = ("lab3", "lab4", "lab5")
MESH = "lab"
"""The mesh name of the lab's inventory (its /etc/hosts block is named after it)."""

MIN_MEMORY_MIB = 2048
"""Three VMs take about 1.1 GiB; less than this available means the tier cannot run here."""


def pytest_collection_modifyitems(
    session: pytest.Session, config: pytest.Config, items: list[pytest.Item]
) -> None:
    """Run this tier last, and within it the tests that make their own labs before those that share
    the session's lab: the shared lab holds the machine until the session ends."""
    here = Path(__file__).parent

    def rank(item: pytest.Item) -> int:
        if here not in Path(str(item.fspath)).parents:
            return 0
        return 2 if "vm_lab" in getattr(item, "fixturenames", ()) else 1

    items.sort(key=rank)  # stable: the order within each group stays


def machine_problems() -> list[str]:
    """Why this machine cannot run the VM tier (empty: it can)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the VM tier needs root (taps, bridges, network namespaces)")
    wanted = {**PROGRAMS, **VM_PROGRAMS}
    if vmimage.find() is None:
        wanted.update(vmimage.IMAGE_PROGRAMS)
    missing = [f"{p} ({pkg})" for p, pkg in wanted.items() if find_program(p) is None]
    if missing:
        problems.append(f"missing {', '.join(missing)}: run ./scripts/install-deps")
    if not Path("/dev/net/tun").exists():
        problems.append("/dev/net/tun is missing (taps for the VMs)")
    available = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            available = int(line.split()[1]) // 1024
    if available < MIN_MEMORY_MIB:
        problems.append(f"only {available} MiB of memory available, the VMs need {MIN_MEMORY_MIB}")
    return problems


@pytest.fixture(autouse=True)
def _vm_tier(request: pytest.FixtureRequest) -> None:
    """Fail a ``vm`` test at once, with the reason, when the machine cannot run it."""
    if request.node.get_closest_marker("vm") is None:
        return
    problems = machine_problems()
    if problems:
        pytest.fail("VM tier: " + "; ".join(problems), pytrace=False)


def wm(lab: Lab, *args: str) -> Result:
    """``wiremesh -f <lab inventory> ARGS`` through the real entry point."""
    return cli("-f", str(lab.inventory_path), *args)


def wm_json(lab: Lab, *args: str) -> tuple[Result, dict[str, Any]]:
    """:func:`wm` with ``--json``, parsed."""
    r = wm(lab, *args, "--json")
    try:
        value = json.loads(r.out)
    except ValueError:
        pytest.fail(f"wiremesh {' '.join(args)} --json printed no JSON: {r.out}{r.err}")
    assert isinstance(value, dict)
    return r, value


def reset_namespace_host(lab: Lab, name: str) -> None:
    """Take WireGuard and everything wiremesh wrote off a namespace host (they have no snapshots)."""
    lab.exec(name, ["sh", "-c", scripts.remove_hosts_block(MESH)])
    lab.exec(name, ["sh", "-c", scripts.tear_down("wg0", MESH)])
    lab.exec(name, ["sh", "-c", "rm -rf /etc/wireguard/* /run/wiremesh"])


@dataclass
class VmLab:
    """The session's lab and what tests restore it to."""

    lab: Lab
    inventories: dict[str, str] = field(default_factory=dict)
    """Snapshot tag -> the inventory text that goes with it."""
    notes: dict[str, object] = field(default_factory=dict)
    """What making a snapshot printed (``mesh3``: the cold apply's plan and results)."""

    def restore(self, tag: str) -> Lab:
        """Put the VMs back into snapshot ``tag``, reset the namespace hosts, and write the
        inventory that goes with the snapshot."""
        # The VMs' clocks run on from the snapshot's time (see Lab.loadvm); the namespace hosts get
        # fresh interfaces, so they hold no handshake timestamps of the VMs from a later time.
        self.lab.loadvm(tag)
        for name in NAMESPACE_HOSTS:
            reset_namespace_host(self.lab, name)
        self.lab.inventory_path.write_text(self.inventories[tag])
        return self.lab


@pytest.fixture(scope="session")
def vm_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VmLab]:
    """lab1, lab2 (namespace hosts) and lab3..lab5 (VMs), booted once; snapshot ``fresh`` of every VM."""
    problems = machine_problems()
    if problems:
        pytest.fail("VM tier: " + "; ".join(problems), pytrace=False)
    vmimage.ensure()  # built here on a fresh machine (a minute or two), before the lab is claimed
    directory = tmp_path_factory.mktemp("vm") / "lab"
    lab = Lab.up(directory, len(NAMESPACE_HOSTS), vms=len(VMS), wait=LAB_WAIT)
    try:
        assert [h.name for h in lab.vms] == list(VMS)
        for name in VMS:  # boot finished: no start-up job runs again after each restore
            lab.exec(name, ["systemctl", "is-system-running", "--wait"], check=False, timeout=180)
        lab.savevm("fresh")
        yield VmLab(lab, {"fresh": lab.inventory_path.read_text()})
    finally:
        footprint = LabFootprint.of(lab.dir)
        lab.down()
        assert_lab_gone(footprint)


@pytest.fixture
def fresh(vm_lab: VmLab) -> Lab:
    """The VMs as booted, no WireGuard anywhere, the inventory of all five hosts."""
    return vm_lab.restore("fresh")


@pytest.fixture(scope="session")
def mesh3(vm_lab: VmLab) -> VmLab:
    """Snapshot ``mesh3``: a cold ``apply`` of lab3..lab5 from ``fresh`` (its plan and result kept in
    ``notes`` for the test of the cold apply)."""
    lab = vm_lab.restore("fresh")
    for name in NAMESPACE_HOSTS:
        r = wm(lab, "node", "rm", name, "--forget")
        assert r.code == 0, r.err
    vm_lab.notes["plan"] = wm_json(lab, "plan")[1]
    apply = wm(lab, "--debug", "apply", "--yes")
    vm_lab.notes["apply"] = apply
    assert apply.code == 0, apply.out + apply.err
    # Verified before it is kept: every VM pings every other over the mesh.
    r, status = wm_json(lab, "status", "--ping")
    assert r.code == 0 and status["healthy"] is True, r.out
    vm_lab.notes["status"] = status
    lab.savevm("mesh3")
    vm_lab.inventories["mesh3"] = lab.inventory_path.read_text()
    return vm_lab


@pytest.fixture
def meshed(mesh3: VmLab) -> Lab:
    """lab3..lab5 in a verified full mesh, as right after the cold apply."""
    return mesh3.restore("mesh3")
