"""Issue 10, item 1: no value of an inventory or an option can add a line to a file on a host.

The exact attack of the issue (a zone id carrying ``PreUp``), its relatives (zone ids in endpoints,
networks and routed subnets, a trailing newline in a name), and the render-time guards that refuse
such a value even when it comes from an inventory built in code (test_render_guards.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import NASTY_TEXT, cli
from wiremesh.codec.inventory_toml import parse_data
from wiremesh.errors import ValidationError

PAYLOAD = "fd00:70::1%x\nPreUp = touch /root/marker #"

BASE = """\
version = 1

[mesh]
name = "t"
cidr = "10.70.0.0/24"
cidr6 = "fd00:70::/64"

[[node]]
name = "a"
endpoint = "203.0.113.1"
"""


def _inventory(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "wiremesh.toml"
    path.write_text(text)
    return path


def test_the_issue_s_zone_id_payload_is_refused_in_the_file_and_as_an_option(
    tmp_path: Path,
) -> None:
    toml_payload = PAYLOAD.replace("\n", "\\n")
    inv = _inventory(tmp_path, BASE + f'address6 = "{toml_payload}"\n')
    before = inv.read_bytes()
    for args in (["node", "ls"], ["show", "a"], ["render", "--out", str(tmp_path / "o")]):
        r = cli("-f", inv, *args)
        assert r.code == 2, r
        assert "zone id" in r.err and "Traceback" not in r.err
        assert "PreUp" not in r.out
    assert inv.read_bytes() == before
    assert not (tmp_path / "o").exists()

    inv.write_text(BASE)
    before = inv.read_bytes()
    r = cli("-f", inv, "node", "set", "a", "--address6", PAYLOAD)
    assert r.code == 2 and "zone id" in r.err
    assert inv.read_bytes() == before


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("endpoint", "[fe80::1%a;id]"),
        ("endpoint", "[fe80::1%eth0]:51820"),
        ("private_endpoint", "[fe80::1%a;id]"),
        ("ssh", "root@[fe80::1%eth0]"),
        ("allowed_ips", ["fd10::%x/64"]),
    ],
)
def test_zone_ids_are_refused_in_every_address_key(tmp_path: Path, key: str, value: object) -> None:
    text = BASE + '[[node]]\nname = "b"\n'
    text += f"{key} = {value!r}\n".replace("'", '"')
    inv = _inventory(tmp_path, text)
    r = cli("-f", inv, "node", "ls")
    assert r.code == 2, r
    assert "zone id" in r.err, r.err


def test_zone_id_in_cidr6_is_refused(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, BASE.replace("fd00:70::/64", "fd00:70::%eth0/64"))
    assert cli("-f", inv, "node", "ls").code == 2
    r = cli("-f", tmp_path / "new.toml", "init", "--cidr", "10.0.0.0/24", "--cidr6", "fd00::%x/64")
    assert r.code == 2 and "zone id" in r.err


@pytest.mark.parametrize(
    ("key", "value"),
    [("name", "b\\n"), ("site", "fra\\n"), ("ssh", "root\\n@203.0.113.9")],
)
def test_a_trailing_newline_is_not_a_valid_name(tmp_path: Path, key: str, value: str) -> None:
    # Python's re '$' matches before a trailing newline: names are checked with fullmatch.
    text = BASE + f'[[node]]\nname = "b"\n{key} = "{value}"\n'
    if key == "name":
        text = BASE + f'[[node]]\nname = "{value}"\n'
    r = cli("-f", _inventory(tmp_path, text), "node", "ls")
    assert r.code == 2, r


def test_interface_with_a_trailing_newline_is_refused(tmp_path: Path) -> None:
    text = BASE.replace('name = "t"', 'name = "t"\ninterface = "wg0\\n"')
    assert cli("-f", _inventory(tmp_path, text), "node", "ls").code == 2


def test_k3s_external_ip_with_a_zone_is_refused(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, BASE + 'k3s_role = "server"\n')
    r = cli("-f", inv, "k3s", "config", "a", "--node-external-ip", "fe80::1%x")
    assert r.code == 2 and "zone id" in r.err


def test_show_quotes_no_path_that_would_break_its_line(tmp_path: Path) -> None:
    odd = tmp_path / "a#b"
    odd.mkdir()
    inv = odd / "wiremesh.toml"
    inv.write_text(BASE)
    assert cli("-f", inv, "render", "--out", odd / "out").code == 0
    r = cli("-f", inv, "show", "a")
    assert r.code == 0, r
    line = next(x for x in r.out.splitlines() if x.startswith("PrivateKey"))
    assert "#" not in line


@pytest.mark.parametrize("junk", NASTY_TEXT)
def test_nasty_text_in_a_zone_id_never_reaches_a_file(junk: str) -> None:
    """The exact values of the issue, and each nasty string as a zone id, in every key that takes
    an address: all refused at the edge."""
    for key, value in (
        ("address6", f"fd00:77::5%{junk}"),
        ("endpoint", f"[fe80::1%{junk}]:51820"),
        ("private_endpoint", f"[fe80::1%{junk}]"),
        ("allowed_ips", [f"fd10::%{junk}/64"]),
        ("ssh", f"root@[fe80::1%{junk}]"),
    ):
        data = {
            "version": 1,
            "mesh": {"name": "m", "cidr": "10.20.0.0/24", "cidr6": "fd00:77::/64"},
            "node": [{"name": "a", key: value}],
        }
        with pytest.raises(ValidationError):
            parse_data(data, "zone")
