"""Session-wide setup: take down a lab that an earlier, killed test run left behind.

Only one lab runs on a machine. A test run that is killed (a CI timeout, SIGKILL, a power cut of the
runner) cannot run its teardown, so its lab stays recorded and every lab test of the next run fails with
"another lab runs on this machine". A lab whose directory is under pytest's temporary root and whose
owner process is gone was made by a test that will never take it down; the next run does it, before
pytest's own clean-up of old temporary directories can delete the lab's state file (after which only
a manual clean-up could find its namespaces and links).
"""

from __future__ import annotations

import getpass
import os
import tempfile
from pathlib import Path

import pytest

from wiremesh.errors import WiremeshError
from wiremesh.lab import procs
from wiremesh.lab.lab import down_dir
from wiremesh.lab.state import LabState, MachineRecord


def temp_root_of_pytest() -> Path:
    """Where pytest makes its numbered ``pytest-N`` directories (``_pytest.tmpdir`` does the same)."""
    root = os.environ.get("PYTEST_DEBUG_TEMPROOT") or tempfile.gettempdir()
    return Path(root).resolve() / f"pytest-of-{getpass.getuser()}"


def orphaned_test_lab(temproot: Path) -> Path | None:
    """The recorded lab's directory if a test made it (under ``temproot``) and its owner is gone."""
    record = MachineRecord.load()
    if record is None or not record.dir.is_relative_to(temproot):
        return None
    if not LabState.exists(record.dir):
        return record.dir  # `up` died before its first step; down_dir releases the record
    owner = LabState.load(record.dir).owner
    if owner is not None and procs.is_alive(owner):
        return None  # another test session runs it and will take it down
    return record.dir


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.geteuid() != 0:
        return
    try:
        directory = orphaned_test_lab(temp_root_of_pytest())
        if directory is not None:
            down_dir(directory)
            print(
                f"\nwiremesh tests: took down a lab an earlier, killed test run left in {directory}"
            )
    except WiremeshError as e:
        # Not fatal here: the lab tests then fail with the lab's own message and hint.
        print(f"\nwiremesh tests: could not take down a leftover test lab: {e}")
