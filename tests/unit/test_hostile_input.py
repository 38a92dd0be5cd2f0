"""Issue 10, items 6, 7 and 8: input that crashed, misled, or was treated inconsistently.

Every case runs the real entry point and checks the one error type: exit code 2 (usage or
validation) or 1 (an operation), a hint, no "unexpected ..." and no traceback, and the inventory
byte for byte as it was.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from tests.helpers import ONE_NODE, Result, cli, write_inventory

BASE = ONE_NODE


def _inventory(tmp_path: Path, text: str = BASE) -> Path:
    return write_inventory(tmp_path, text)


def _clean_failure(r: Result, code: int) -> None:
    assert r.code == code, r
    assert "Traceback" not in r.err and "unexpected" not in r.err, r.err
    assert "hint:" in r.err, r.err


# --- item 6: crashes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    ["[[removed]]\n", '[[removed]]\nname = "Bad Name"\n', "[[removed]]\nname = 7\n"],
)
def test_removed_entry_without_a_valid_name(tmp_path: Path, entry: str) -> None:
    inv = _inventory(tmp_path, BASE + entry)
    before = inv.read_bytes()
    for args in (["node", "ls"], ["node", "add", "b"], ["show", "a"]):
        r = cli("-f", inv, *args)
        _clean_failure(r, 2)
        assert "removed" in r.err
    assert inv.read_bytes() == before


@pytest.mark.parametrize(
    "option",
    [
        ["--connect-timeout", "-1"],
        ["--connect-timeout", "0"],
        ["--connect-timeout", "nan"],
        ["--command-timeout", "inf"],
        ["--command-timeout", "1e9"],
        ["--parallel", "0"],
        ["--parallel", "-3"],
        ["--parallel", "x"],
    ],
)
@pytest.mark.parametrize("command", ["plan", "apply", "status"])
def test_numeric_options_are_range_checked_before_any_host_is_contacted(
    tmp_path: Path, command: str, option: list[str]
) -> None:
    inv = _inventory(tmp_path)
    r = cli("-f", inv, command, *option)
    assert r.code == 2, r
    assert option[0] in r.err and "Traceback" not in r.err


@pytest.mark.parametrize(
    "args",
    [
        ["init", "--cidr", "10.9.0.0/24", "--keepalive", "-1"],
        ["init", "--cidr", "10.9.0.0/24", "--keepalive", "70000"],
        ["init", "--cidr", "10.9.0.0/24", "--port", "²"],
        ["init", "--cidr", "10.9.0.0/24", "--mtu", "1e3"],
        ["node", "add", "b", "--listen-port", "1" * 5000],
        ["node", "add", "b", "--endpoint", "203.0.113.9:" + "9" * 5000],
        ["node", "add", "b", "--endpoint", "203.0.113.9:²"],
    ],
)
def test_bad_numbers_are_usage_errors(tmp_path: Path, args: list[str]) -> None:
    inv = tmp_path / "new" / "wiremesh.toml"
    inv.parent.mkdir()
    if args[0] == "node":
        inv.write_text(BASE)
    before = inv.read_bytes() if inv.exists() else None
    r = cli("-f", inv, *args)
    assert r.code == 2, r
    assert "Traceback" not in r.err and "unexpected" not in r.err
    assert (inv.read_bytes() if inv.exists() else None) == before


def test_init_in_a_directory_that_cannot_be_written(tmp_path: Path) -> None:
    r = cli("-f", "/sys/wiremesh-test.toml", "init", "--cidr", "10.9.0.0/24")
    _clean_failure(r, 1)
    assert "cannot write /sys/wiremesh-test.toml" in r.err


def test_an_edit_that_cannot_be_written_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inv = _inventory(tmp_path)
    before = inv.read_bytes()

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("wiremesh.store.inventory_file.write_atomic", read_only)
    r = cli("-f", inv, "node", "add", "b")
    _clean_failure(r, 1)
    assert "Read-only file system" in r.err
    assert inv.read_bytes() == before

    monkeypatch.setattr("wiremesh.store.keydir.write_atomic", read_only)
    conf = tmp_path / "alpha.conf"
    conf.write_text(
        "[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\n"
        "Address = 10.5.0.1/24\n"
    )
    r = cli("-f", tmp_path / "other.toml", "import", conf)
    _clean_failure(r, 1)
    assert not (tmp_path / "other.toml").exists()


def test_deeply_nested_arrays_are_a_validation_error(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, BASE + "allowed_ips = " + "[" * 5000 + "]" * 5000 + "\n")
    before = inv.read_bytes()
    r = cli("-f", inv, "node", "ls")
    _clean_failure(r, 2)
    assert "nested too deeply" in r.err
    assert inv.read_bytes() == before


def test_a_nested_value_of_the_wrong_type_is_reported_shortly(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, BASE + "allowed_ips = " + "[" * 300 + "]" * 300 + "\n")
    r = cli("-f", inv, "node", "ls")
    _clean_failure(r, 2)
    assert len(r.err) < 1000


def test_ctrl_c_while_the_command_line_is_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", interrupted)
    r = cli("node", "ls")
    assert r.code == 130
    assert "Traceback" not in r.err and "interrupted" in r.err


def test_ctrl_c_while_the_parser_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("wiremesh.cli.main._command_modules", interrupted)
    r = cli("node", "ls")
    assert r.code == 130 and "Traceback" not in r.err


def test_nul_in_a_path_is_a_usage_error(tmp_path: Path) -> None:
    for args in (["-f", "a\x00b", "node", "ls"], ["render", "--out", "a\x00b"]):
        r = cli(*args)
        assert r.code == 2 and "Traceback" not in r.err, r


# --- item 7: networks and endpoints that cannot work ---------------------------------------------


@pytest.mark.parametrize(
    "cidr",
    [
        "0.0.0.0/0",
        "0.0.0.0/8",
        "127.0.0.0/8",
        "127.1.0.0/24",
        "224.0.0.0/24",
        "239.1.0.0/16",
        "240.0.0.0/24",
        "255.255.255.0/24",
        "169.254.0.0/24",
        "128.0.0.0/1",
    ],
)
def test_networks_that_cannot_carry_a_mesh_are_refused(tmp_path: Path, cidr: str) -> None:
    inv = tmp_path / "wiremesh.toml"
    r = cli("-f", inv, "init", "--cidr", cidr)
    _clean_failure(r, 2)
    assert "cannot be a mesh network" in r.err
    assert not inv.exists()
    inv.write_text(BASE.replace("10.0.0.0/24", cidr))
    assert cli("-f", inv, "node", "ls").code == 2


@pytest.mark.parametrize(
    "cidr6", ["::/0", "::/64", "::1/128", "fe80::/64", "ff02::/16", "::ffff:0:0/96"]
)
def test_ipv6_networks_that_cannot_carry_a_mesh_are_refused(tmp_path: Path, cidr6: str) -> None:
    r = cli("-f", tmp_path / "w.toml", "init", "--cidr", "10.0.0.0/24", "--cidr6", cidr6)
    _clean_failure(r, 2)
    assert "cannot be a mesh network" in r.err


@pytest.mark.parametrize(
    "endpoint",
    [
        "0.0.0.0",
        "0.1.2.3:51820",
        "127.0.0.1",
        "224.0.0.1",
        "255.255.255.255",
        "[::]",
        "[::1]",
        "[ff02::1]",
    ],
)
def test_endpoints_that_reach_no_peer_are_refused(tmp_path: Path, endpoint: str) -> None:
    inv = _inventory(tmp_path)
    before = inv.read_bytes()
    for option in ("--endpoint", "--private-endpoint"):
        r = cli("-f", inv, "node", "add", "b", option, endpoint)
        _clean_failure(r, 2)
        assert "no peer can reach it" in r.err
    assert inv.read_bytes() == before


def test_an_ssh_target_on_loopback_is_still_fine(tmp_path: Path) -> None:
    inv = _inventory(tmp_path)
    assert cli("-f", inv, "node", "add", "b", "--ssh", "root@127.0.0.1:2222").code == 0


@pytest.mark.parametrize(
    ("args", "warning"),
    [
        (["--cidr", "8.8.0.0/16"], "mesh cidr 8.8.0.0/16 is not private address space"),
        (["--cidr", "10.0.0.0/24", "--cidr6", "2001:db8::/64"], "is not a unique local network"),
    ],
)
def test_unusual_networks_are_warned_about_not_refused(
    tmp_path: Path, args: list[str], warning: str
) -> None:
    inv = tmp_path / "wiremesh.toml"
    r = cli("-f", inv, "init", *args)
    assert r.code == 0, r
    assert "warning:" in r.err and warning in " ".join(r.err.split())
    assert "warning" not in r.out
    r = cli("-f", inv, "node", "ls", "--json")
    assert r.code == 0 and warning in " ".join(r.err.split()) and r.out.startswith("{")
    assert r.err.count("warning:") == 1


def test_usual_networks_give_no_warning(tmp_path: Path) -> None:
    for cidr in ("10.0.0.0/24", "172.16.0.0/12", "192.168.7.0/24", "100.64.0.0/24"):
        r = cli("-f", tmp_path / f"{cidr[:3]}.toml", "init", "--cidr", cidr, "--cidr6", "fd00::/64")
        assert r.code == 0 and "warning" not in r.err, r


# --- item 8: one strictness rule ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message", "fix"),
    [
        (
            ('name = "t"', 'name = "t"\nport = "51820"'),
            "[mesh]: port must be a number from 1 to 65535, not the string '51820'",
            "write port = 51820",
        ),
        (
            ('endpoint = "203.0.113.1"', 'endpoint = "203.0.113.1"\nlisten_port = "51821"'),
            "listen_port must be a number from 1 to 65535, not the string '51821'",
            "write listen_port = 51821",
        ),
        (
            ('endpoint = "203.0.113.1"', 'endpoint = "203.0.113.1"\nallowed_ips = "172.16.0.0/24"'),
            "allowed_ips must be a list of subnets, not the string '172.16.0.0/24'",
            'write allowed_ips = ["172.16.0.0/24"]',
        ),
        (
            ("version = 1", 'version = "1"'),
            "version must be a number, not the string '1'",
            "write version = 1",
        ),
        (
            ('name = "t"', 'name = "t"\nmtu = "1400"'),
            "mtu must be a number or \"auto\", not the string '1400'",
            "write mtu = 1400",
        ),
        (
            ('name = "t"', 'name = "t"\nkeepalive = "25"'),
            "keepalive must be a whole number, not the string '25'",
            "write keepalive = 25",
        ),
        (
            ('name = "t"', "name = 5"),
            "name must be a string, not the number 5",
            'write name = "5"',
        ),
        (
            ('endpoint = "203.0.113.1"', "endpoint = 42"),
            "endpoint must be a string like HOST[:PORT], not the number 42",
            "write endpoint =",
        ),
        (
            ('endpoint = "203.0.113.1"', 'endpoint = "203.0.113.1"\nk3s_role = true'),
            "k3s_role must be a string",
            'write k3s_role = "server"',
        ),
    ],
)
def test_every_key_has_strict_types_with_a_hint(
    tmp_path: Path, change: tuple[str, str], message: str, fix: str
) -> None:
    inv = _inventory(tmp_path, BASE.replace(*change, 1))
    before = inv.read_bytes()
    r = cli("-f", inv, "node", "add", "b")
    _clean_failure(r, 2)
    text = " ".join(r.err.split())
    assert message in text, text
    assert fix in text, text
    assert inv.read_bytes() == before


def test_a_byte_order_mark_is_accepted_and_kept(tmp_path: Path) -> None:
    inv = tmp_path / "wiremesh.toml"
    inv.write_bytes(b"\xef\xbb\xbf" + BASE.encode())
    r = cli("-f", inv, "node", "ls", "--json")
    assert r.code == 0, r
    assert cli("-f", inv, "node", "add", "b").code == 0
    data = inv.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf") and data.count(b"\xef\xbb\xbf") == 1
    assert b'name = "b"' in data
    assert cli("-f", inv, "node", "ls").code == 0


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory"])
def test_a_non_regular_inventory_is_refused_before_reading(tmp_path: Path, kind: str) -> None:
    if kind == "dev-zero":
        path = Path("/dev/zero")
    elif kind == "fifo":
        path = tmp_path / "fifo.toml"
        os.mkfifo(path)
    else:
        path = tmp_path / "dir.toml"
        path.mkdir()
    for args in (["node", "ls"], ["node", "add", "b"], ["render", "--out", str(tmp_path / "o")]):
        r = cli("-f", path, *args)
        _clean_failure(r, 2)
        assert "not a regular file" in r.err


def test_a_fifo_to_import_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "alpha.conf"
    os.mkfifo(fifo)
    r = cli("-f", tmp_path / "w.toml", "import", fifo)
    _clean_failure(r, 2)
    assert "not a regular file" in r.err


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('name = "a"', 'name = "' + "x" * 5_000_000 + '"'), "name"),
        (('endpoint = "203.0.113.1"', 'endpoint = "' + "y" * 5_000_000 + '"'), "endpoint"),
        (('name = "t"', 'name = "t"\n' + "z" * 100_000 + " = 1"), "unknown key"),
        (('endpoint = "203.0.113.1"', 'public_key = "' + "k" * 100_000 + '"'), "public_key"),
        (('endpoint = "203.0.113.1"', 'ssh = "' + "u" * 100_000 + '@h"'), "ssh"),
    ],
)
def test_error_messages_quote_at_most_about_80_characters(
    tmp_path: Path, change: tuple[str, str], key: str
) -> None:
    inv = _inventory(tmp_path, BASE.replace(*change, 1))
    r = cli("-f", inv, "node", "ls")
    _clean_failure(r, 2)
    assert key in r.err
    assert len(r.err) < 1500, len(r.err)


def test_unknown_node_names_are_quoted_shortly(tmp_path: Path) -> None:
    inv = _inventory(tmp_path)
    r = cli("-f", inv, "show", "q" * 100_000)
    assert r.code == 2 and len(r.err) < 1000


def test_a_file_with_thousands_of_problems_lists_fifty(tmp_path: Path) -> None:
    text = BASE + "".join(f'[[node]]\nname = "n{i}"\nendpoint = "x{i}:port"\n' for i in range(500))
    r = cli("-f", _inventory(tmp_path, text), "node", "ls")
    assert r.code == 2
    assert "500 problems" in r.err and "... and 450 more" in r.err
    assert r.err.count("endpoint: port") == 50


@pytest.mark.parametrize("text", ["hk:²", "hk:", ":3"])
def test_lab_group_counts_are_ascii_digits(text: str) -> None:
    from wiremesh.errors import ValidationError
    from wiremesh.lab.spec import parse_group, parse_mtu

    with pytest.raises(ValidationError):
        parse_group(text, "--site")
    with pytest.raises(ValidationError):
        parse_mtu("lab1=²")
