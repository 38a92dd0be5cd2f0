"""Issue 10, item 2: an ssh_config that comes with the inventory runs nothing on the operator's
machine unless the operator says so.

The commands in these configs only touch a marker file in the test's directory, and they replace
the TCP connection (ProxyCommand) or run while the config is read (Match exec): no test here sends a
packet anywhere but to a closed port on loopback.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from tests.helpers import cli

INVENTORY = """\
version = 1

[mesh]
name = "t"
cidr = "10.0.0.0/24"
ssh_config = "ssh_config"

[[node]]
name = "a"
ssh = "root@lab1"
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _setup(tmp_path: Path, config: str) -> tuple[Path, Path]:
    inv = tmp_path / "wiremesh.toml"
    inv.write_text(INVENTORY)
    (tmp_path / "ssh_config").write_text(config)
    return inv, tmp_path / "marker"


def _proxy(marker: Path) -> str:
    return f"Host lab1\n  HostName 127.0.0.1\n  ProxyCommand sh -c 'touch {marker}; exit 1'\n"


@pytest.mark.parametrize("command", ["plan", "status", "apply"])
def test_proxycommand_in_the_inventory_s_ssh_config_is_refused(
    tmp_path: Path, command: str
) -> None:
    inv, marker = _setup(tmp_path, "")
    (tmp_path / "ssh_config").write_text(_proxy(marker))
    before = inv.read_bytes()
    r = cli(
        "-f", inv, command, "--connect-timeout", "2", *(["--yes"] if command == "apply" else [])
    )
    assert r.code == 2, r
    text = " ".join(r.err.split())
    assert f"{tmp_path / 'ssh_config'} line 3: ProxyCommand runs a local command" in text
    assert "--trust-ssh-config" in text
    assert not marker.exists()
    assert inv.read_bytes() == before


def test_match_exec_is_refused_before_the_file_is_ever_parsed(tmp_path: Path) -> None:
    inv, marker = _setup(tmp_path, "")
    (tmp_path / "ssh_config").write_text(f'Match exec "touch {marker}"\n  User root\n')
    r = cli("-f", inv, "plan", "--connect-timeout", "2")
    assert r.code == 2 and "line 1: Match exec runs a local command" in r.err, r
    assert not marker.exists()


def test_included_files_are_checked_too(tmp_path: Path) -> None:
    inv, marker = _setup(tmp_path, "")
    extra = tmp_path / "extra.conf"
    extra.write_text(f"# a comment\nPermitLocalCommand yes\nLocalCommand touch {marker}\n")
    (tmp_path / "ssh_config").write_text(f"Include {extra}\nHost lab1\n  HostName 127.0.0.1\n")
    r = cli("-f", inv, "plan", "--connect-timeout", "2")
    assert r.code == 2, r
    assert f"{extra} line 2: PermitLocalCommand" in r.err
    assert f"{extra} line 3: LocalCommand runs a local command" in r.err


@pytest.mark.parametrize(
    "how",
    [
        ["--trust-ssh-config"],
        ["--ssh-config", "ssh_config"],  # the user's own choice (same file, given explicitly)
        "env",
    ],
)
def test_a_trusted_ssh_config_is_used(tmp_path: Path, how: list[str] | str) -> None:
    inv, marker = _setup(tmp_path, "")
    (tmp_path / "ssh_config").write_text(_proxy(marker))
    env = {"WIREMESH_TRUST_SSH_CONFIG": "1"} if how == "env" else {}
    args = [] if how == "env" else list(how)
    if args[:1] == ["--ssh-config"]:
        args[1] = str(tmp_path / "ssh_config")
    r = cli(*args, "-f", inv, "plan", "--connect-timeout", "5", env=env)
    assert r.code == 1, r  # the proxy command fails: the host is unreachable
    assert marker.exists()  # ... but it did run: the config was trusted


def test_a_config_without_commands_is_not_refused(tmp_path: Path) -> None:
    port = _closed_port()
    config = (
        f"Host lab1\n  HostName 127.0.0.1\n  Port {port}\n  User root\n  ProxyCommand none\n"
        f"  ForwardAgent no\n  UserKnownHostsFile {tmp_path}/known_hosts\n"
        "  StrictHostKeyChecking yes\n"
    )
    inv, _ = _setup(tmp_path, config)
    r = cli("-f", inv, "plan", "--connect-timeout", "2")
    assert r.code == 1, r  # connection refused on loopback: an operation error, not a refusal
    assert "cannot connect to root@127.0.0.1" in r.out


def test_agent_forwarding_is_refused_too(tmp_path: Path) -> None:
    inv, _ = _setup(tmp_path, "Host *\n  ForwardAgent yes\n")
    r = cli("-f", inv, "plan", "--connect-timeout", "2")
    assert r.code == 2 and "ForwardAgent lets the hosts use your ssh-agent" in r.err, r


def test_scan_finds_every_spelling() -> None:
    from wiremesh.codec.ssh_config import scan

    text = "\n".join(
        [
            "# ProxyCommand in a comment",
            "proxycommand=nc %h %p",
            "  ProxyCommand = ssh -W %h:%p jump",
            'Match host x !exec "test -f y"',
            "Match host exec-server",  # a host called exec-server: no command
            "KnownHostsCommand /bin/true",
            "PKCS11Provider /usr/lib/x.so",
            "ForwardAgent no",
            "ProxyCommand none",
            "Include a.conf b/*.conf",
        ]
    )
    scanned = scan(text, "cfg")
    assert [(f.line, f.directive) for f in scanned.findings] == [
        (2, "proxycommand"),
        (3, "ProxyCommand"),
        (4, "Match exec"),
        (6, "KnownHostsCommand"),
        (7, "PKCS11Provider"),
    ]
    assert [i.patterns for i in scanned.includes] == [("a.conf", "b/*.conf")]


def test_known_hosts_files_outside_the_inventory_and_ssh_dirs_are_refused(tmp_path: Path) -> None:
    # --accept-new-host-keys appends to the first UserKnownHostsFile: not into any file of yours.
    inv, _ = _setup(tmp_path, "Host lab1\n  UserKnownHostsFile ~/.bashrc\n")
    r = cli("-f", inv, "plan", "--accept-new-host-keys")
    assert r.code == 2 and "UserKnownHostsFile '~/.bashrc' is outside" in r.err, r
    port = _closed_port()
    ok = f"Host lab1\n  HostName 127.0.0.1\n  Port {port}\n  UserKnownHostsFile {tmp_path}/kh /dev/null\n"
    (tmp_path / "ssh_config").write_text(ok)
    assert cli("-f", inv, "plan", "--connect-timeout", "2").code == 1  # allowed; host unreachable
