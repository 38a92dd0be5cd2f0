"""``[metrics] textfile`` through plan and apply (issue 13): the inventory setting and its checks,
the collector's files planned as managed files, written then activated once, and removed (after one
deactivation) when the setting is turned off; files someone else wrote are left alone."""

from __future__ import annotations

import asyncio
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, cast

import pytest

from tests.unit import mesh_fixture as mf
from tests.unit.test_plan import CONF, K0, _running, _wanted
from wiremesh.codec.inventory_toml import loads
from wiremesh.errors import ValidationError
from wiremesh.model.host import FileState
from wiremesh.model.inventory import DEFAULT_TEXTFILE_DIR, MetricsSettings
from wiremesh.model.plan import RemoveFile, WriteFile, plan_host
from wiremesh.ops.textfile import textfile_files
from wiremesh.remote import hostops, scripts
from wiremesh.remote.ssh import CommandResult, Session

BASE = 'version = 1\n[mesh]\ncidr = "10.0.0.0/24"\n'


def test_the_metrics_table_defaults_and_is_checked_strictly() -> None:
    assert loads(BASE).inventory.metrics == MetricsSettings(False, 30, DEFAULT_TEXTFILE_DIR)
    text = BASE + '[metrics]\ntextfile = true\ninterval = 10\ndirectory = "/srv/node-exporter/"\n'
    assert loads(text).inventory.metrics == MetricsSettings(True, 10, "/srv/node-exporter")
    bad = {
        'textfile = "yes"': "must be true or false",
        "interval = 2": "out of range",
        "interval = 1.5": "whole number",
        'directory = "relative/dir"': "plain absolute directory",
        'directory = "/var/lib/../etc"': "plain absolute directory",
        'directory = "/var/lib/x y"': "plain absolute directory",
        'directory = "/tmp/$(reboot)"': "plain absolute directory",
        'directroy = "/x"': "did you mean 'directory'",
    }
    for line, message in bad.items():
        with pytest.raises(ValidationError, match=message.replace("(", r"\(")):
            loads(BASE + "[metrics]\n" + line + "\n")
    with pytest.raises(ValidationError, match="'metrics' must be a table"):
        loads('version = 1\nmetrics = 1\n[mesh]\ncidr = "10.0.0.0/24"\n')


def _files_on() -> tuple[Any, ...]:
    inventory = mf.inventory()
    on = replace(inventory, metrics=MetricsSettings(textfile=True))
    return textfile_files(on)["a"]


def test_files_are_planned_like_any_managed_file() -> None:
    wanted, names = _wanted()
    files = _files_on()
    wanted = replace(wanted, files=files)
    observed = replace(_running(wanted), public_key=K0)
    plan = plan_host("n0", wanted, observed, CONF, names)
    assert [c for c in plan.changes if isinstance(c, WriteFile)] == [
        WriteFile(f.path, "new") for f in files
    ]
    # written and unchanged: nothing to do
    there = {f.path: FileState(True, True, f.sha256, f.mode) for f in files}
    assert plan_host("n0", wanted, replace(observed, files=there), CONF, names).empty
    # someone else's file at that path: left alone, with a note
    theirs = {**there, files[1].path: FileState(True, False, "x", 0o644)}
    plan = plan_host("n0", wanted, replace(observed, files=theirs), CONF, names)
    assert plan.empty and any("not written by wiremesh" in n for n in plan.notes)


def test_turning_it_off_removes_our_files_only() -> None:
    wanted, names = _wanted()
    retired = textfile_files(mf.inventory())["a"]
    wanted = replace(wanted, files=retired)
    observed = replace(_running(wanted), public_key=K0)
    assert plan_host("n0", wanted, observed, CONF, names).empty  # never installed
    ours = {f.path: FileState(True, True, "x", 0o644) for f in retired}
    ours[retired[0].path] = FileState(True, False, "x", 0o644)  # not ours: stays
    plan = plan_host("n0", wanted, replace(observed, files=ours), CONF, names)
    assert plan.changes == tuple(RemoveFile(f.path) for f in retired[1:])
    assert plan.changes[0].describe().startswith("remove /etc/systemd/system/wiremesh-metrics")


@dataclass
class FakeSession:
    """Records the scripts run (and their stdin)."""

    node: str = "n0"
    ran: list[tuple[str, str, str | None]] = field(default_factory=list)

    async def run(self, script: str, *, step: str, stdin: str | None = None, **_: Any) -> Any:
        self.ran.append((step, script, stdin))
        return CommandResult(0, "", "")


def _execute(files: tuple[Any, ...], changes: tuple[Any, ...]) -> FakeSession:
    from wiremesh.model.changes import HostPlan

    wanted, _ = _wanted()
    wanted = replace(wanted, files=files)
    observed = replace(_running(wanted), public_key=K0)
    session = FakeSession()
    asyncio.run(
        hostops.execute(cast(Session, session), HostPlan("n0", changes), wanted, observed, "m")
    )
    return session


def test_apply_writes_the_files_then_activates_once() -> None:
    files = _files_on()
    session = _execute(files, tuple(WriteFile(f.path, "new") for f in files))
    steps = [step for step, _, _ in session.ran]
    assert steps == [f"writing {f.path}" for f in files] + ["activating the files written"]
    assert [stdin for _, _, stdin in session.ran[:3]] == [f.text for f in files]
    assert session.ran[0][1] == scripts.write_file(files[0].path, 0o755)
    assert "systemctl restart wiremesh-metrics-wg0.timer" in session.ran[3][1]


def test_apply_deactivates_once_then_removes_each_file_if_ours() -> None:
    retired = textfile_files(mf.inventory())["a"]
    session = _execute(retired, tuple(RemoveFile(f.path) for f in retired))
    steps = [step for step, _, _ in session.ran]
    assert steps == [f"deactivating {retired[0].path}"] + [f"removing {f.path}" for f in retired]
    assert "systemctl disable --now" in session.ran[0][1]
    assert "wiremesh-wg0.prom" in session.ran[0][1]
    for (_, script, _), file in zip(session.ran[1:], retired, strict=True):
        assert script == scripts.remove_managed_file(file.path)
        assert "head -n 1" in script and "# wiremesh: managed file" in script


def test_the_removal_script_keeps_a_file_that_is_not_ours(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "ours.timer", tmp_path / "theirs.timer"
    ours.write_text("# wiremesh: managed file: written by 'wiremesh apply'\n[Timer]\n")
    theirs.write_text("[Timer]\n# wiremesh: managed file (not on the first line)\n")
    for path in (ours, theirs, tmp_path / "missing"):
        subprocess.run(["sh", "-c", scripts.remove_managed_file(str(path))], check=True)
    assert not ours.exists() and theirs.exists()
