"""The inventory file: comments survive edits, keys are validated, edits are minimal."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import cli

HAND_WRITTEN = """\
# Our production mesh. Ask Alice before changing the CIDR!
version = 1

[mesh]
name = "prod"           # shows up in /etc/hosts names
cidr = "10.20.0.0/24"

# --- Hong Kong ---
[[node]]
name = "hk-1"
endpoint = "203.0.113.10"   # the elastic IP
ssh = "admin@hk-1"

[[node]]
name = "hk-2"   # spare box
address = "10.20.0.9"
"""


def test_node_add_keeps_comments_and_existing_addresses(tmp_path: Path) -> None:
    inv = tmp_path / "wiremesh.toml"
    inv.write_text(HAND_WRITTEN)
    r = cli("-f", inv, "node", "add", "sh-1", "--endpoint", "198.51.100.3:51000", "--site", "sh")
    assert r.code == 0, r.err
    text = inv.read_text()
    # Every line of the original survives, in order (hk-1 gains its allocated address).
    original_lines = [line for line in HAND_WRITTEN.splitlines() if line]
    remaining = iter(text.splitlines())
    for line in original_lines:
        assert any(line == got for got in remaining), line
    assert 'address = "10.20.0.1"' in text  # hk-1: lowest free
    assert 'name = "sh-1"\naddress = "10.20.0.2"' in text  # next lowest; hk-2 keeps .9
    ls = cli("-f", inv, "node", "ls", "--json")
    import json

    data = json.loads(ls.out)
    assert [(n["name"], n["address"]) for n in data["nodes"]] == [
        ("hk-1", "10.20.0.1"),
        ("hk-2", "10.20.0.9"),
        ("sh-1", "10.20.0.2"),
    ]


def test_set_and_rm_touch_only_their_node(tmp_path: Path) -> None:
    inv = tmp_path / "wiremesh.toml"
    inv.write_text(HAND_WRITTEN)
    assert cli("-f", inv, "node", "set", "hk-2", "--endpoint", "203.0.113.11").code == 0
    assert cli("-f", inv, "node", "set", "hk-1", "--clear", "ssh").code == 0
    text = inv.read_text()
    assert 'name = "hk-2"   # spare box' in text
    assert 'endpoint = "203.0.113.11"' in text
    assert "admin@hk-1" not in text
    assert cli("-f", inv, "node", "rm", "hk-2").code == 0
    text = inv.read_text()
    assert "hk-2" not in text
    assert "# Our production mesh. Ask Alice before changing the CIDR!" in text
    assert 'name = "prod"           # shows up in /etc/hosts names' in text


def test_no_op_edit_leaves_file_byte_identical(tmp_path: Path) -> None:
    inv = tmp_path / "wiremesh.toml"
    assert cli("-f", inv, "init", "--cidr", "10.0.0.0/24").code == 0
    assert cli("-f", inv, "node", "add", "a", "--endpoint", "203.0.113.1").code == 0
    before = inv.read_bytes()
    assert cli("-f", inv, "node", "set", "a", "--endpoint", "203.0.113.1").code == 0
    assert inv.read_bytes() == before


def test_env_var_and_default_file(tmp_path: Path, monkeypatch: object) -> None:
    inv = tmp_path / "custom.toml"
    assert cli("init", "--cidr", "10.0.0.0/24", env={"WIREMESH_FILE": str(inv)}).code == 0
    assert inv.exists()
    r = cli("node", "ls", env={"WIREMESH_FILE": str(inv)})
    assert r.code == 0


def test_ipv6_overlay_allocates_both(tmp_path: Path) -> None:
    inv = tmp_path / "w.toml"
    assert cli("-f", inv, "init", "--cidr", "10.0.0.0/24", "--cidr6", "fd00:77::/64").code == 0
    assert cli("-f", inv, "node", "add", "a").code == 0
    assert cli("-f", inv, "node", "add", "b", "--endpoint", "[2001:db8::2]:51820").code == 0
    text = inv.read_text()
    assert 'address6 = "fd00:77::2"' in text
    shown = cli("-f", inv, "node", "ls", "--json").out
    assert "fd00:77::1" in shown


def test_ls_table_and_help(tmp_path: Path) -> None:
    inv = tmp_path / "w.toml"
    cli("-f", inv, "init", "--cidr", "10.0.0.0/24", "--name", "demo")
    cli("-f", inv, "node", "add", "a")
    r = cli("-f", inv, "node", "ls")
    assert "mesh demo" in r.out
    assert "behind NAT" in r.out
    assert cli("--help").code == 0
    assert cli("--version").code == 0
