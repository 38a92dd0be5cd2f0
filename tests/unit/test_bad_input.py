"""A table of bad inputs: each gives exit code 2, a message naming the problem, and leaves the
inventory byte-for-byte unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import cli

BASE = """\
version = 1

[mesh]
name = "t"
cidr = "10.0.0.0/29"

[[node]]
name = "a"
address = "10.0.0.1"
endpoint = "203.0.113.1"
allowed_ips = ["172.16.0.0/24"]

[[node]]
name = "b"
address = "10.0.0.2"
"""

KEY = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg="  # a valid public key
FILE_CASES = [
    # (what, text to append or replace, expected message)
    (
        "duplicate name",
        BASE + '[[node]]\nname = "a"\naddress = "10.0.0.3"\n',
        "node name 'a' is used by 2",
    ),
    (
        "duplicate address",
        BASE + '[[node]]\nname = "c"\naddress = "10.0.0.2"\n',
        "node 'c': address 10.0.0.2 is already used by node 'b'",
    ),
    (
        "out of cidr",
        BASE + '[[node]]\nname = "c"\naddress = "10.0.1.2"\n',
        "node 'c': address 10.0.1.2 is not a host address of the mesh cidr 10.0.0.0/29",
    ),
    ("broadcast", BASE + '[[node]]\nname = "c"\naddress = "10.0.0.7"\n', "not a host address"),
    (
        "overlap between nodes",
        BASE + '[[node]]\nname = "c"\nallowed_ips = ["172.16.0.128/25"]\n',
        "node 'c': allowed_ips 172.16.0.128/25 overlaps 172.16.0.0/24, that of node 'a'",
    ),
    (
        "overlap with mesh",
        BASE + '[[node]]\nname = "c"\nallowed_ips = ["10.0.0.0/16"]\n',
        "node 'c': allowed_ips 10.0.0.0/16 overlaps the mesh network",
    ),
    (
        "bad endpoint",
        BASE + '[[node]]\nname = "c"\nendpoint = "2001:db8::1"\n',
        "node 'c': endpoint: IPv6 address '2001:db8::1' must be in brackets",
    ),
    (
        "bad endpoint port",
        BASE + '[[node]]\nname = "c"\nendpoint = "203.0.113.3:99999"\n',
        "node 'c': endpoint: port 99999 is not a valid port",
    ),
    (
        "bad listen port",
        BASE + '[[node]]\nname = "c"\nlisten_port = 0\n',
        "node 'c': listen_port 0 is not a valid port",
    ),
    (
        "bad mesh port",
        BASE.replace('name = "t"', 'name = "t"\nport = "http"'),
        "[mesh]: port must be a number from 1 to 65535, not the string 'http'",
    ),
    (
        "bad cidr",
        BASE.replace("10.0.0.0/29", "10.0.0.0/33"),
        "[mesh]: cidr '10.0.0.0/33' is not an IPv4 network",
    ),
    ("host bits", BASE.replace("10.0.0.0/29", "10.0.0.1/29"), "has host bits set"),
    (
        "bad key",
        BASE + '[[node]]\nname = "c"\npublic_key = "abc"\n',
        "node 'c': public_key 'abc' is not a WireGuard key",
    ),
    (
        "duplicate key",
        BASE
        + f'[[node]]\nname = "c"\npublic_key = "{KEY}"\n[[node]]\nname = "d"\npublic_key = "{KEY}"\n',
        "node 'd': public_key is the same as node 'c'",
    ),
    (
        "unknown node key",
        BASE + '[[node]]\nname = "c"\nendpiont = "203.0.113.3"\n',
        "node 'c': unknown key 'endpiont' (did you mean 'endpoint'?)",
    ),
    (
        "unknown mesh key",
        BASE.replace('name = "t"', 'name = "t"\nkeepalve = 5'),
        "[mesh]: unknown key 'keepalve' (did you mean 'keepalive'?)",
    ),
    (
        "unknown top key",
        BASE.replace("[mesh]", "[meshh]"),
        "unknown key 'meshh' (did you mean 'mesh'?)",
    ),
    ("version too new", BASE.replace("version = 1", "version = 7"), "unsupported format version 7"),
    ("no version", BASE.replace("version = 1\n", ""), "no format 'version'"),
    ("toml syntax", BASE + "[[node]\n", "TOML syntax error at line 16, column"),
    (
        "bad node name",
        BASE + '[[node]]\nname = "Web_1"\n',
        "node 'Web_1': name 'Web_1' is not a valid name",
    ),
    ("mtu", BASE.replace('name = "t"', 'name = "t"\nmtu = 100'), "mesh mtu 100 is out of range"),
    (
        "cidr full",
        BASE + "".join(f'[[node]]\nname = "x{i}"\n' for i in range(5)),
        "mesh network 10.0.0.0/29 is full: all 6 addresses are in use",
    ),
]


@pytest.mark.parametrize(("what", "text", "message"), FILE_CASES, ids=[c[0] for c in FILE_CASES])
def test_bad_inventory_files(tmp_path: Path, what: str, text: str, message: str) -> None:
    inv = tmp_path / "wiremesh.toml"
    inv.write_text(text)
    before = inv.read_bytes()
    for command in (
        ["node", "ls"],
        ["node", "add", "zz"],
        ["render", "--out", str(tmp_path / "o")],
    ):
        r = cli("-f", inv, *command)
        assert r.code == 2, (what, command, r.err)
        assert message in " ".join(r.err.split()), (what, r.err)
        assert "Traceback" not in r.err
        assert "hint:" in r.err or what in ("toml syntax",)
        assert inv.read_bytes() == before
    assert not (tmp_path / "o").exists()
    assert not (tmp_path / "wiremesh.keys").exists()


COMMAND_CASES = [
    (["node", "add", "c", "--address", "10.0.0.2"], "address 10.0.0.2 is already used by node 'b'"),
    (["node", "add", "c", "--address", "10.0.0.9"], "not a host address of the mesh cidr"),
    (["node", "add", "c", "--address", "10.0.0"], "--address '10.0.0' is not an IPv4 address"),
    (["node", "add", "a"], "a node named 'a' already exists"),
    (["node", "add", "-bad-"], "the following arguments are required: NAME"),
    (["node", "add", "Bad"], "node name 'Bad' is not a valid name"),
    (["node", "add", "c", "--endpoint", "host:port"], "--endpoint: port 'port'"),
    (["node", "add", "c", "--ssh", "root@"], "--ssh"),
    (["node", "add", "c", "--allowed-ip", "172.16.0.1/24"], "has host bits set"),
    (
        ["node", "add", "c", "--allowed-ip", "172.16.0.0/26"],
        "overlaps 172.16.0.0/24, that of node 'a'",
    ),
    (["node", "add", "c", "--listen-port", "70000"], "--listen-port 70000 is not a valid port"),
    (["node", "set", "zz", "--site", "x"], "no node named 'zz'"),
    (["node", "set", "aa", "--site", "x"], "(did you mean 'a'?)"),
    (["node", "rm", "q"], "no node named 'q'"),
    (["show", "q"], "no node named 'q'"),
    (["init", "--cidr", "10.0.0.0/24"], "already exists"),
    (["import", "/nonexistent/wg0.conf"], "cannot read"),
    (["nosuchcommand"], "invalid choice"),
]


@pytest.mark.parametrize(
    ("args", "message"), COMMAND_CASES, ids=[" ".join(c[0]) for c in COMMAND_CASES]
)
def test_bad_commands(tmp_path: Path, args: list[str], message: str) -> None:
    inv = tmp_path / "wiremesh.toml"
    inv.write_text(BASE)
    before = inv.read_bytes()
    r = cli("-f", inv, *args)
    assert r.code in (1, 2), r.err
    assert r.code == (1 if args[0] == "import" else 2)
    assert message in " ".join(r.err.split()), r.err
    assert "Traceback" not in r.err
    assert inv.read_bytes() == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["init", "--cidr", "10.0.0.0"], "--cidr '10.0.0.0' is not an IPv4 network in CIDR form"),
        (["init", "--cidr", "fd00::/64"], "not an IPv4 network"),
        (["init", "--cidr", "10.0.0.0/24", "--cidr6", "10.1.0.0/24"], "--cidr6"),
        (["init", "--cidr", "10.0.0.0/24", "--port", "0"], "--port 0 is not a valid port"),
        (
            ["init", "--cidr", "10.0.0.0/24", "--interface", "this-name-is-too-long"],
            "not a valid interface name",
        ),
        (
            ["init", "--cidr", "10.0.0.0/24", "--name", "My Mesh"],
            "--name 'My Mesh' is not a valid name",
        ),
        (["init", "--cidr", "10.0.0.0/24", "--mtu", "70"], "mesh mtu 70 is out of range"),
        (["init", "--cidr", "10.0.0.0/31"], "too small"),
        (["node", "ls"], "no inventory at"),
    ],
)
def test_bad_init(tmp_path: Path, args: list[str], message: str) -> None:
    inv = tmp_path / "wiremesh.toml"
    r = cli("-f", inv, *args)
    assert r.code == 2
    assert message in " ".join(r.err.split()), r.err
    assert not inv.exists()


def test_debug_shows_traceback(tmp_path: Path) -> None:
    r = cli("--debug", "-f", tmp_path / "none.toml", "node", "ls")
    assert r.code == 2
    assert "Traceback" in r.err
