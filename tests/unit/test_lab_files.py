"""What lab up writes into DIR: ssh_config, known_hosts, sshd_config, the inventory (pure)."""

from __future__ import annotations

import re
import stat
from ipaddress import IPv4Address
from pathlib import Path

from wiremesh.codec.inventory_toml import loads
from wiremesh.lab import layout, sshkeys
from wiremesh.lab.inventory import render_inventory
from wiremesh.lab.state import LabState
from wiremesh.lab.teardown import _unescape, remove_files

HOSTS = [
    sshkeys.SshHost("lab1", IPv4Address("198.51.100.11"), "ssh-ed25519 AAAA1 root@lab1"),
    sshkeys.SshHost("lab2", IPv4Address("198.51.100.12"), "ssh-ed25519 AAAA2"),
]


def test_known_hosts_names_alias_and_address() -> None:
    assert sshkeys.render_known_hosts(HOSTS) == (
        "lab1,198.51.100.11 ssh-ed25519 AAAA1\nlab2,198.51.100.12 ssh-ed25519 AAAA2\n"
    )


def test_ssh_config_is_strict_and_absolute() -> None:
    text = sshkeys.render_ssh_config(HOSTS, Path("/srv/lab"))
    blocks = re.split(r"\n(?=Host )", text)[1:]
    assert [b.splitlines()[0] for b in blocks] == ["Host lab1", "Host lab2"]
    for block in blocks:
        options = dict(line.split(maxsplit=1) for line in block.splitlines()[1:] if line)
        assert options["User"] == "root"
        assert options["Port"] == "22"
        assert options["IdentityFile"] == "/srv/lab/id_ed25519"
        assert options["IdentitiesOnly"] == "yes"
        assert options["UserKnownHostsFile"] == "/srv/lab/known_hosts"
        assert options["StrictHostKeyChecking"] == "yes"
        assert int(options["ConnectTimeout"]) > 0
    assert "HostName 198.51.100.12" in blocks[1]


def test_sshd_config() -> None:
    text = sshkeys.render_sshd_config("lab1", [IPv4Address("198.51.100.11")])
    lines = set(text.splitlines())
    for wanted in (
        "ListenAddress 198.51.100.11",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "MaxStartups 100:30:200",
        "PidFile /run/sshd.pid",
    ):
        assert wanted in lines


def test_host_keys_are_ed25519_and_hidden_in_repr() -> None:
    key = sshkeys.generate_host_key()
    assert key.public.startswith("ssh-ed25519 ")
    assert key.private.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert "PRIVATE" not in repr(key)
    assert sshkeys.generate_host_key().public != key.public


def test_write_private_is_0600(tmp_path: Path) -> None:
    sshkeys.write_private(tmp_path / "k", b"secret")
    assert stat.S_IMODE((tmp_path / "k").stat().st_mode) == 0o600


def test_parse_keyscan() -> None:
    out = (
        "# 198.51.100.11:22 SSH-2.0-OpenSSH_9.2p1\n"
        "198.51.100.11 ssh-ed25519 AAAA1\n\n"
        "198.51.100.12 ssh-ed25519 AAAA2\n"
    )
    assert sshkeys.parse_keyscan(out) == {
        "198.51.100.11": "ssh-ed25519 AAAA1",
        "198.51.100.12": "ssh-ed25519 AAAA2",
    }


EXPECTED_INVENTORY = """\
# wiremesh inventory written by `wiremesh lab up`; edit freely.
version = 1

[mesh]
name = "lab"
interface = "wg0"
cidr = "10.77.0.0/24"
port = 51820
mtu = 1420
keepalive = 25
ssh_config = "ssh_config"   # relative to this file's directory

[[node]]
name = "lab1"
address = "10.77.0.1"
endpoint = "198.51.100.11:51820"
ssh = "root@lab1"
"""


def test_inventory_has_the_agreed_shape_and_loads() -> None:
    text = render_inventory(layout.host_addresses(1), "ssh_config")
    assert text == EXPECTED_INVENTORY
    big = render_inventory(layout.host_addresses(50), "ssh_config")
    inventory = loads(big).inventory
    assert len(inventory.nodes) == 50
    assert str(inventory.mesh.cidr) == "10.77.0.0/24"


def test_mountinfo_unescape() -> None:
    assert _unescape(r"/tmp/a\040b\134c") == "/tmp/a b\\c"
    assert _unescape("/plain") == "/plain"


def test_remove_files_never_leaves_the_lab_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("keep")
    lab = tmp_path / "lab"
    (lab / "hosts" / "lab1").mkdir(parents=True)
    (lab / "ssh_config").write_text("x")
    state = LabState(dir=lab, hosts_wanted=1, files=["hosts", "ssh_config", "../outside"])
    state.save()
    problems = remove_files(state)
    assert problems == [f"refusing to remove {outside}: outside {lab}"]
    assert outside.read_text() == "keep"
    assert not (lab / "hosts").exists()
    assert (lab / "lab.json").exists()  # kept while something could not be handled
