"""What lab up writes into DIR: ssh_config, known_hosts, sshd_config, the inventory (pure)."""

from __future__ import annotations

import re
import stat
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from wiremesh.codec.inventory_toml import loads
from wiremesh.lab import sshkeys
from wiremesh.lab.inventory import write_inventory
from wiremesh.lab.spec import make_spec
from wiremesh.lab.state import LabState
from wiremesh.lab.teardown import _unescape, remove_files
from wiremesh.lab.topology import plan_lab
from wiremesh.store.inventory_file import InventoryFile

HOSTS = [
    sshkeys.SshHost("lab1", IPv4Address("198.51.100.11"), "ssh-ed25519 AAAA1 root@lab1"),
    sshkeys.SshHost("lab2", IPv4Address("198.51.100.12"), "ssh-ed25519 AAAA2"),
]


def test_known_hosts_names_alias_and_address() -> None:
    assert sshkeys.render_known_hosts(HOSTS) == (
        "lab1,198.51.100.11 ssh-ed25519 AAAA1\nlab2,198.51.100.12 ssh-ed25519 AAAA2\n"
    )


def test_known_hosts_and_ssh_config_of_a_host_behind_nat() -> None:
    natted = sshkeys.SshHost("lab5", IPv4Address("198.51.100.201"), "ssh-ed25519 AAAA5", port=2215)
    # sshd(8), SSH_KNOWN_HOSTS FILE FORMAT: a non-standard port goes with the host in brackets.
    assert sshkeys.render_known_hosts([natted]) == (
        "[lab5]:2215,[198.51.100.201]:2215 ssh-ed25519 AAAA5\n"
    )
    text = sshkeys.render_ssh_config([HOSTS[0], natted], Path("/srv/lab"))
    block = text.split("Host lab5\n")[1]
    assert "  HostName 198.51.100.201\n  User root\n  Port 2215\n" in block
    assert "Port 22\n" in text.split("Host lab5")[0]
    assert sshkeys.known_host(IPv4Address("198.51.100.11")) == "198.51.100.11"
    assert sshkeys.known_host(IPv4Address("198.51.100.201"), 2215) == "[198.51.100.201]:2215"


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
    text = sshkeys.render_sshd_config(
        "lab1", [IPv4Address("198.51.100.11"), IPv6Address("2001:db8::11")]
    )
    lines = set(text.splitlines())
    for wanted in (
        "ListenAddress 198.51.100.11",
        "ListenAddress 2001:db8::11",
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
    forwarded = "[198.51.100.201]:2215 ssh-ed25519 AAAA5\n"
    assert sshkeys.parse_keyscan(forwarded) == {"[198.51.100.201]:2215": "ssh-ed25519 AAAA5"}


EXPECTED_INVENTORY = """\
# wiremesh inventory written by `wiremesh lab up`; edit freely.
# Edit by hand or with 'wiremesh node ...'; keys: see README.md.
version = 1

[mesh]
name = "lab"
interface = "wg0"
cidr = "10.77.0.0/24"
port = 51820
mtu = 1420
keepalive = 25
ssh_config = "ssh_config"

[[node]]
name = "lab1"
address = "10.77.0.1"
endpoint = "198.51.100.11:51820"
ssh = "root@lab1"
"""


def test_inventory_has_the_agreed_shape_and_loads(tmp_path: Path) -> None:
    write_inventory(tmp_path / "one.toml", plan_lab(make_spec(1)), "ssh_config")
    assert (tmp_path / "one.toml").read_text() == EXPECTED_INVENTORY
    write_inventory(tmp_path / "big.toml", plan_lab(make_spec(50)), "ssh_config")
    inventory = loads((tmp_path / "big.toml").read_text()).inventory
    assert len(inventory.nodes) == 50
    assert str(inventory.mesh.cidr) == "10.77.0.0/24"


def test_inventory_describes_sites_and_nat(tmp_path: Path) -> None:
    path = tmp_path / "wiremesh.toml"
    write_inventory(path, plan_lab(make_spec(1, {"a": 2}, {"home": 2})), "ssh_config")
    inventory = InventoryFile(path).load()  # validated by the core
    mesh = inventory.mesh
    assert (mesh.name, mesh.relay, mesh.ssh_config, mesh.cidr6) == (
        "lab",
        "lab1",
        "ssh_config",
        None,
    )
    rows = [
        (n.name, str(n.endpoint), n.site, str(n.private_endpoint), str(n.ssh)) for n in inventory
    ]
    assert rows == [
        ("lab1", "198.51.100.11:51820", None, "None", "root@lab1"),
        ("lab2", "198.51.100.12:51820", "a", "203.0.113.11", "root@lab2"),
        ("lab3", "198.51.100.13:51820", "a", "203.0.113.12", "root@lab3"),
        # Behind NAT: no endpoint, and nothing about their LAN (no site, no private endpoint).
        ("lab4", "None", None, "None", "root@lab4"),
        ("lab5", "None", None, "None", "root@lab5"),
    ]
    text = path.read_text()
    assert "192.0.2." not in text
    assert 'private_endpoint = "203.0.113.11"\n' in text  # no port: the node's own listen port


def test_inventory_with_ipv6(tmp_path: Path) -> None:
    path = tmp_path / "wiremesh.toml"
    write_inventory(path, plan_lab(make_spec(2, ipv6=True)), "ssh_config")
    inventory = InventoryFile(path).load()
    assert str(inventory.mesh.cidr6) == "fd77::/64"
    assert [str(n.endpoint) for n in inventory] == ["[2001:db8::11]:51820", "[2001:db8::12]:51820"]
    assert [str(n.address6) for n in inventory] == ["fd77::1", "fd77::2"]
    assert 'endpoint = "[2001:db8::11]:51820"' in path.read_text()


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
