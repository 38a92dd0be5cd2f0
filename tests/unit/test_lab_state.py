"""The intent log and machine record on disk (pure file I/O in a tmp dir)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from wiremesh.errors import ValidationError
from wiremesh.lab.spec import LabSpec, make_spec
from wiremesh.lab.state import (
    STATE_VERSION,
    HostState,
    LabState,
    MachineRecord,
    ProcRef,
    VmState,
    machine_lock,
)


def test_state_round_trips_and_is_private(tmp_path: Path) -> None:
    state = LabState(dir=tmp_path, hosts_wanted=2)
    state.bridges = ["wm-pub"]
    state.netns = ["wm-lab1", "wm-lab2"]
    state.veths = ["wm-lab1-eth0", "wm-lab2-eth0"]
    state.hosts = [
        HostState("lab1", 1, "wm-lab1", "198.51.100.11", ProcRef(10, 100), ProcRef(11, 101)),
        HostState("lab2", 2, "wm-lab2", "198.51.100.12", ProcRef(12, 102)),
    ]
    state.add_file("hosts")
    state.add_file("hosts")
    state.save()
    assert stat.S_IMODE(state.path.stat().st_mode) == 0o600
    loaded = LabState.load(tmp_path)
    assert loaded == state
    assert loaded.files == ["hosts"]
    assert loaded.host("lab2").init is None
    raw = json.loads(state.path.read_text())
    assert raw["kind"] == "wiremesh-lab"
    assert raw["version"] == STATE_VERSION == 2
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


def test_state_keeps_vms_and_reads_version_1_as_a_lab_without_vms(tmp_path: Path) -> None:
    spec = make_spec(1, vms=2)
    state = LabState(dir=tmp_path, hosts_wanted=spec.total, spec=spec)
    state.taps = ["wm-lab2-tap", "wm-lab3-tap"]
    state.vms = [
        VmState(
            "lab2",
            2,
            "wm-lab2-tap",
            "198.51.100.12",
            "vms/lab2",
            "/run/x.qmp",
            "/run/x.ssh",
            "bookworm-abc",
            ProcRef(20, 200),
        ),
        VmState(
            "lab3",
            3,
            "wm-lab3-tap",
            "198.51.100.13",
            "vms/lab3",
            "/run/y.qmp",
            "/run/y.ssh",
            "bookworm-abc",
        ),
    ]
    state.save()
    loaded = LabState.load(tmp_path)
    assert loaded == state
    assert loaded.vm("lab3").qemu is None
    assert loaded.topology.vms == 2
    raw = json.loads(state.path.read_text())
    raw["version"] = 1
    for key in ("taps", "vms"):
        del raw[key]
    state.path.write_text(json.dumps(raw))
    old = LabState.load(tmp_path)
    assert (old.taps, old.vms) == ([], [])


def test_state_keeps_the_topology(tmp_path: Path) -> None:
    spec = make_spec(1, {"a": 2}, {"home": 1}, underlay_mtu={"lab2": 1280, None: 1400})
    state = LabState(dir=tmp_path, hosts_wanted=spec.total, spec=spec)
    state.save()
    loaded = LabState.load(tmp_path)
    assert loaded.spec == spec
    assert loaded.topology == spec
    # A state written before topologies existed has no spec: it was a flat lab of public hosts.
    raw = json.loads(state.path.read_text())
    del raw["spec"]
    state.path.write_text(json.dumps(raw))
    old = LabState.load(tmp_path)
    assert old.spec is None
    assert old.topology == LabSpec(public=4)


def test_missing_foreign_newer_and_damaged_states_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="no lab in"):
        LabState.load(tmp_path)
    path = tmp_path / "lab.json"
    path.write_text('{"kind": "something-else"}')
    with pytest.raises(ValidationError, match="not a wiremesh lab state"):
        LabState.load(tmp_path)
    path.write_text('{"kind": "wiremesh-lab", "version": 99}')
    with pytest.raises(ValidationError, match="version 99"):
        LabState.load(tmp_path)
    path.write_text('{"kind": "wiremesh-lab", "version": 1, "dir": "/x"}')
    with pytest.raises(ValidationError, match="damaged"):
        LabState.load(tmp_path)
    path.write_text("{not json")
    with pytest.raises(ValidationError, match="cannot read"):
        LabState.load(tmp_path)


def test_machine_record(tmp_path: Path) -> None:
    assert MachineRecord.load(tmp_path) is None
    record = MachineRecord(dir=Path("/srv/lab"), sysctl_saved={"net.x": "128"})
    record.save(tmp_path)
    loaded = MachineRecord.load(tmp_path)
    assert loaded == record
    assert not loaded.stale
    MachineRecord(dir=Path("/srv/lab"), boot_id="another-boot").save(tmp_path)
    old = MachineRecord.load(tmp_path)
    assert old is not None and old.stale
    MachineRecord.remove(tmp_path)
    assert MachineRecord.load(tmp_path) is None
    with machine_lock(tmp_path):
        assert (tmp_path / "lock").exists()
