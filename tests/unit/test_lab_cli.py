"""`wiremesh lab` errors that need no root: argument ranges and prerequisites."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import cli
from wiremesh.errors import OperationError
from wiremesh.lab import prereq


@pytest.mark.parametrize("hosts", ["0", "61", "-3"])
def test_up_rejects_a_host_count_out_of_range(hosts: str, tmp_path: Path) -> None:
    r = cli("lab", "up", "--hosts", hosts, "--dir", tmp_path / "lab")
    assert r.code == 2
    assert "--hosts must be between 1 and 60" in r.err
    assert "hint:" in r.err
    assert not (tmp_path / "lab").exists()


def test_up_needs_hosts() -> None:
    r = cli("lab", "up")
    assert r.code == 2
    assert "--hosts" in r.err


def test_lab_commands_need_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    d = str(tmp_path)
    for args in (
        ["up", "--hosts", "3", "--dir", d],
        ["down", "--dir", d],
        ["ls", "--dir", d],
        ["exec", "--dir", d, "lab1", "--", "true"],
    ):
        r = cli("lab", *args)
        assert r.code == 1, args
        assert "needs root" in r.err
        assert "sudo" in r.err


def test_missing_tun_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    with pytest.raises(OperationError, match="/dev/net/tun") as err:
        prereq.check_prerequisites(tun=tmp_path / "no-tun")
    assert err.value.hint and "modprobe tun" in err.value.hint


@pytest.mark.parametrize(
    ("program", "package"),
    [
        ("sshd", "openssh-server"),
        ("ssh-keygen", "openssh-client"),
        ("wireguard-go", "wireguard-go"),
        ("wg", "wireguard-tools"),
        ("ip", "iproute2"),
        ("nsenter", "util-linux"),
    ],
)
def test_missing_programs_name_their_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, program: str, package: str
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    tun = tmp_path / "tun"
    tun.touch()
    real = prereq.find_program
    monkeypatch.setattr(prereq, "find_program", lambda n: None if n == program else real(n))
    with pytest.raises(OperationError) as err:
        prereq.check_prerequisites(tun=tun)
    assert f"{program} (package {package})" in err.value.message
    assert err.value.hint == f"install them: apt-get install {package}"


def test_nat_routers_need_iptables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    tun = tmp_path / "tun"
    tun.touch()
    real = prereq.find_program
    monkeypatch.setattr(
        prereq, "find_program", lambda n: None if n == "iptables-restore" else real(n)
    )
    prereq.check_prerequisites(tun=tun)  # a lab without NAT does not need it
    with pytest.raises(OperationError) as err:
        prereq.check_prerequisites(tun=tun, nat=True)
    assert "iptables-restore (package iptables)" in err.value.message
    assert err.value.hint == "install them: apt-get install iptables"
