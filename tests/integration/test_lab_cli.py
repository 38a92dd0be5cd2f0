"""`wiremesh lab ...` through the real entry point: up, ls, exec, down, and the errors of up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import cli
from tests.integration.conftest import LabFootprint, assert_lab_gone

pytestmark = pytest.mark.root


def test_up_ls_exec_down(tmp_path: Path) -> None:
    directory = tmp_path / "lab"
    up = cli("lab", "up", "--hosts", "2", "--dir", directory)
    try:
        assert up.code == 0, up.err
        assert "lab up: 2 hosts" in up.out
        assert f"wiremesh -f {directory}/wiremesh.toml node ls" in up.out
        assert f"ssh -F {directory}/ssh_config lab1" in up.out
        assert up.err == ""  # no progress bar when not on a terminal

        listed = cli("lab", "ls", "--dir", directory)
        assert listed.code == 0
        assert "198.51.100.12" in listed.out
        as_json = json.loads(cli("lab", "ls", "--dir", directory, "--json").out)
        assert as_json["complete"] is True
        assert [h["name"] for h in as_json["hosts"]] == ["lab1", "lab2"]

        assert cli("lab", "exec", "--dir", directory, "lab2", "--", "sh", "-c", "exit 7").code == 7
        assert cli("lab", "exec", "--dir", directory, "lab1", "--", "true").code == 0
        assert cli("lab", "exec", "--dir", directory, "lab1", "no-such-program").code == 127
        unknown = cli("lab", "exec", "--dir", directory, "lab9", "--", "true")
        assert unknown.code == 2
        assert "lab1, lab2" in unknown.err

        # The inventory works with no further setup.
        nodes = cli("-f", directory / "wiremesh.toml", "node", "ls")
        assert nodes.code == 0, nodes.err
        assert "198.51.100.11:51820" in nodes.out

        again = cli("lab", "up", "--hosts", "2", "--dir", directory)
        assert again.code == 2
        assert f"{directory} already holds a lab" in again.err
        assert f"wiremesh lab down --dir {directory}" in again.err

        other = cli("lab", "up", "--hosts", "2", "--dir", tmp_path / "other")
        assert other.code == 1
        assert f"another lab runs on this machine, in {directory}" in other.err
        assert f"wiremesh lab down --dir {directory}" in other.err
        assert not (tmp_path / "other").exists()

        footprint = LabFootprint.of(directory)
    finally:
        down = cli("lab", "down", "--dir", directory)
    assert down.code == 0, down.err
    assert_lab_gone(footprint)


def test_up_refuses_a_dir_with_files_it_would_overwrite(tmp_path: Path) -> None:
    (tmp_path / "wiremesh.toml").write_text("# mine\n")
    r = cli("lab", "up", "--hosts", "1", "--dir", tmp_path)
    assert r.code == 2
    assert "already has wiremesh.toml" in r.err
    assert (tmp_path / "wiremesh.toml").read_text() == "# mine\n"


def test_ls_and_exec_without_a_lab(tmp_path: Path) -> None:
    r = cli("lab", "ls", "--dir", tmp_path)
    assert r.code == 2
    assert "no lab in" in r.err
    assert "wiremesh lab up" in r.err
