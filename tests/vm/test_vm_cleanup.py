"""Issue 11, "it must show" 4: `lab down` after a VM lab, a failed `up` or one killed midway leaves no
QEMU process, ssh control master, tap, overlay, identity disk, socket or namespace behind.

Each test makes its own lab, so these run before the session's shared VM lab comes up (see conftest).
``assert_lab_gone`` checks every kind of resource explicitly, the VM kinds included.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import cli
from tests.integration.conftest import LAB_WAIT, LabFootprint, assert_lab_gone, crash_up
from wiremesh.lab import Lab, down_dir, procs
from wiremesh.lab.state import LabState

pytestmark = [pytest.mark.root, pytest.mark.vm, pytest.mark.slow]


def _assert_vm_footprint(footprint: LabFootprint, qemus: int) -> None:
    """The footprint names what a VM lab makes, so that checking it proves something."""
    assert footprint.taps == ["wm-lab2-tap", "wm-lab3-tap"][: len(footprint.taps)]
    assert footprint.taps and set(footprint.taps) <= set(footprint.links)
    assert footprint.vm_files and footprint.vm_markers
    running = [p for p in footprint.processes if procs.is_alive(p) and _is_qemu(p.pid)]
    assert len(running) == qemus, footprint.processes


def _is_qemu(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"qemu-system-x86_64")
    except OSError:
        return False


def test_down_removes_vms_and_everything(tmp_path: Path) -> None:
    lab = Lab.up(tmp_path / "lab", 1, vms=1, wait=LAB_WAIT)
    # Something to clean up in the VM and beside it: an ssh control master, WireGuard in the kernel.
    lab.exec("lab2", ["ip", "link", "add", "wg0", "type", "wireguard"])
    footprint = LabFootprint.of(lab.dir)
    _assert_vm_footprint(footprint, qemus=1)
    assert Path(lab.dir / "vms" / "lab2" / "disk.qcow2").exists()
    assert procs.pids_with_argument([str(Path(LabState.load(lab.dir).vm("lab2").control))])
    r = cli("lab", "down", "--dir", lab.dir)
    assert r.code == 0, r.err
    assert_lab_gone(footprint)
    assert not lab.dir.exists()


def test_a_failing_up_with_vms_removes_what_it_made(tmp_path: Path) -> None:
    seen: list[LabFootprint] = []

    def fail_at(where: str) -> None:
        if where == "vm:lab3":
            footprint = LabFootprint.of(tmp_path / "lab")
            _assert_vm_footprint(footprint, qemus=2)  # both VMs booting
            seen.append(footprint)
            raise RuntimeError(f"injected failure at {where}")

    with pytest.raises(RuntimeError, match="injected failure"):
        Lab.up(tmp_path / "lab", 1, vms=2, wait=LAB_WAIT, checkpoint=fail_at)
    assert seen
    assert_lab_gone(seen[0])
    assert not (tmp_path / "lab").exists()


@pytest.mark.parametrize(
    ("step", "qemus"),
    [
        ("qemu:lab2", 1),  # QEMU started, not yet recorded: found by its command line
        ("vm:lab3", 2),  # both VMs booting
        ("ready", 2),  # both VMs up, the lab's files not written yet
    ],
)
def test_down_after_a_crashed_vm_up_removes_everything(
    tmp_path: Path, step: str, qemus: int
) -> None:
    directory = tmp_path / "lab"
    crash_up(directory, step, "1, vms=2, wait=300", timeout=600)
    try:
        state = LabState.load(directory)
        assert state.status == "creating"
        if step == "qemu:lab2":
            assert state.vm("lab2").qemu is None  # the crash came before the record
        footprint = LabFootprint.of(directory)
        _assert_vm_footprint(footprint, qemus=qemus)
        listed = cli("lab", "ls", "--dir", directory)
        assert "incomplete" in listed.err
    finally:
        down_dir(directory)
    assert_lab_gone(footprint)
