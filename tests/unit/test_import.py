"""``wiremesh import``: adopting hand-written wg-quick configs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import cli, keys
from wiremesh.codec.wgquick import parse
from wiremesh.model.keys import PrivateKey


def _tutorial_pair(root: Path, extra_alpha: str = "", extra_beta: str = "") -> tuple[Path, Path]:
    """The two hand-written wg0.conf files of the classic two-host tutorial."""
    a, b = keys(2)
    alpha = root / "alpha" / "wg0.conf"
    beta = root / "beta" / "wg0.conf"
    alpha.parent.mkdir(parents=True)
    beta.parent.mkdir(parents=True)
    alpha.write_text(
        f"""[Interface]
PrivateKey = {a.reveal()}
Address = 10.0.0.1/24
ListenPort = 51820

[Peer]
PublicKey = {b.public_key()}
Endpoint = 203.0.113.2:51820
AllowedIPs = 10.0.0.2/32
{extra_alpha}"""
    )
    beta.write_text(
        f"""[Interface]
Address = 10.0.0.2/24
PrivateKey = {b.reveal()}
ListenPort = 51820

[Peer]
PublicKey = {a.public_key()}
AllowedIPs = 10.0.0.1/32
Endpoint = 203.0.113.1:51820
{extra_beta}"""
    )
    return alpha, beta


def _strip(path: Path) -> list[str]:
    """``wg-quick strip`` output, comment-free and order-normalised within sections."""
    out = subprocess.run(
        ["wg-quick", "strip", str(path)], capture_output=True, text=True, check=True
    )
    sections: list[list[str]] = []
    for line in out.stdout.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("["):
            sections.append([line])
        else:
            sections[-1].append(line)
    return ["|".join([s[0], *sorted(s[1:])]) for s in sections]


def test_import_then_render_gives_equivalent_configs(tmp_path: Path) -> None:
    alpha, beta = _tutorial_pair(tmp_path / "orig")
    inv = tmp_path / "wiremesh.toml"
    r = cli("-f", inv, "import", alpha, beta)
    assert r.code == 0, r.err
    text = inv.read_text()
    for original in (alpha, beta):
        assert parse(original.read_text()).interface.private_key is not None
        key = parse(original.read_text()).interface.private_key
        assert key is not None
        assert key.reveal() not in text  # private keys never go into the inventory
    assert (tmp_path / "wiremesh.keys" / "alpha.key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "wiremesh.keys").stat().st_mode & 0o777 == 0o700
    out = tmp_path / "out"
    assert cli("-f", inv, "render", "--out", out).code == 0
    for name, original in (("alpha", alpha), ("beta", beta)):
        rendered = out / name / "wg0.conf"
        # wg(8) sees the same device: identical [Interface] and [Peer] settings...
        assert _strip(rendered) == _strip(original)
        # ...and wg-quick the same addresses; MTU 1420 is what wg-quick picks on a 1500 underlay.
        a, b = parse(original.read_text()), parse(rendered.read_text())
        assert a.interface.addresses == b.interface.addresses
        assert b.interface.mtu == 1420


def test_import_reports_a_wrong_key_by_name(tmp_path: Path) -> None:
    alpha, beta = _tutorial_pair(tmp_path / "orig")
    wrong = PrivateKey.generate().public_key()
    text = alpha.read_text()
    good = parse(beta.read_text()).interface.private_key
    assert good is not None
    alpha.write_text(text.replace(str(good.public_key()), str(wrong)))
    inv = tmp_path / "wiremesh.toml"
    r = cli("-f", inv, "import", alpha, beta)
    assert r.code == 2
    flat = " ".join(r.err.split())
    assert f"the peer entry for beta (10.0.0.2) has PublicKey {wrong}" in flat
    assert "but beta's own file" in flat
    assert not inv.exists()
    assert not (tmp_path / "wiremesh.keys").exists()


def test_import_reports_endpoint_disagreement_and_overlaps(tmp_path: Path) -> None:
    root = tmp_path / "orig"
    a, b, c = keys(3)
    files = {}
    layout = {"a": (a, 1), "b": (b, 2), "c": (c, 3)}
    for name, (key, n) in layout.items():
        peers = ""
        for other, (okey, on) in layout.items():
            if other == name:
                continue
            endpoint = f"203.0.113.{on}:51820"
            if name == "a" and other == "c":
                endpoint = "203.0.113.99:51820"  # disagrees with what b says about c
            allowed = f"10.0.0.{on}/32"
            if name == "b" and other == "c":
                allowed += ", 10.0.0.1/32"  # overlaps b's entry for a
            peers += (
                f"[Peer]\nPublicKey = {okey.public_key()}\n"
                f"Endpoint = {endpoint}\nAllowedIPs = {allowed}\n"
            )
        path = root / f"{name}.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"[Interface]\nPrivateKey = {key.reveal()}\nAddress = 10.0.0.{n}/24\n{peers}"
        )
        files[name] = path
    inv = tmp_path / "w.toml"
    r = cli("-f", inv, "import", *files.values())
    assert r.code == 2
    flat = " ".join(r.err.split())
    assert "the endpoint of c differs between files" in flat
    assert "203.0.113.99:51820" in flat
    assert "AllowedIPs 10.0.0.1/32 overlaps 10.0.0.1/32" in flat
    assert not inv.exists()


def test_import_names_and_unknown_peers(tmp_path: Path) -> None:
    alpha, beta = _tutorial_pair(tmp_path / "orig")
    inv = tmp_path / "w.toml"
    r = cli("-f", inv, "import", alpha)
    assert r.code == 2
    assert "matches none of the imported files" in r.err
    r = cli("-f", inv, "import", f"web-1={alpha}", f"web-2={beta}", "--name", "prod")
    assert r.code == 0, r.err
    assert 'name = "web-1"' in inv.read_text()
    assert 'name = "prod"' in inv.read_text()


def test_import_into_existing_inventory(tmp_path: Path) -> None:
    alpha, beta = _tutorial_pair(tmp_path / "orig")
    inv = tmp_path / "w.toml"
    assert cli("-f", inv, "init", "--cidr", "10.0.0.0/24").code == 0
    assert cli("-f", inv, "node", "add", "other", "--address", "10.0.0.7").code == 0
    r = cli("-f", inv, "import", alpha, beta)
    assert r.code == 0, r.err
    names = [line for line in inv.read_text().splitlines() if line.startswith("name =")]
    assert names == ['name = "mesh"', 'name = "other"', 'name = "alpha"', 'name = "beta"']
    r = cli("-f", inv, "import", alpha, beta)
    assert r.code == 2
    assert "already in" in r.err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[Interface]\nAddress = 10.0.0.1/24\n", "no PrivateKey"),
        (f"[Interface]\nPrivateKey = {keys(1)[0].reveal()}\n", "no IPv4 Address"),
        ("[Interface]\nPrivateKey = nope\n", "is not a WireGuard key"),
    ],
)
def test_import_bad_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "x.conf"
    path.write_text(content)
    r = cli("-f", tmp_path / "w.toml", "import", path)
    assert r.code == 2
    assert message in r.err


# --- issue 10, item 9: nothing is dropped silently; the tutorial pair imports ---------------------

HOOKS = (
    "PostUp = iptables -A FORWARD -i %i -j ACCEPT\nPreDown = iptables -D FORWARD -i %i -j ACCEPT\n"
)


def _with_interface_lines(path: Path, lines: str) -> None:
    path.write_text(path.read_text().replace("[Interface]\n", "[Interface]\n" + lines, 1))


def test_hooks_and_preshared_keys_are_refused_unless_dropped_on_purpose(tmp_path: Path) -> None:
    alpha, beta = _tutorial_pair(
        tmp_path / "orig", extra_alpha=f"PresharedKey = {keys(3)[2].reveal()}\n"
    )
    _with_interface_lines(beta, HOOKS)
    inv = tmp_path / "w.toml"
    r = cli("-f", inv, "import", alpha, beta)
    assert r.code == 2, r
    flat = " ".join(r.err.split())
    assert f"{alpha}: [Peer] at line 6 PresharedKey will not be kept" in flat
    assert f"{beta}: [Interface] PostUp will not be kept (wiremesh runs no hooks)" in flat
    assert f"{beta}: [Interface] PreDown will not be kept" in flat
    assert "--drop-unsupported" in flat
    assert keys(3)[2].reveal() not in r.err  # a preshared key is a secret: never shown
    assert not inv.exists() and not (tmp_path / "wiremesh.keys").exists()

    r = cli("-f", inv, "import", "--drop-unsupported", alpha, beta)
    assert r.code == 0, r
    flat = " ".join(r.err.split())
    assert flat.count("warning:") >= 3
    assert "PresharedKey will not be kept" in flat and "PostUp will not be kept" in flat


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("DNS = 1.1.1.1", "DNS"),
        ("Table = off", "Table"),
        ("SaveConfig = true", "SaveConfig"),
        ("FwMark = 0x1234", "FwMark"),
        ("MTU = 1380", "MTU 1380"),
    ],
)
def test_every_other_key_that_is_not_kept_is_reported_per_file(
    tmp_path: Path, line: str, key: str
) -> None:
    alpha, beta = _tutorial_pair(tmp_path / "orig")
    _with_interface_lines(alpha, line + "\n")
    r = cli("-f", tmp_path / "w.toml", "import", alpha, beta)
    assert r.code == 0, r
    flat = " ".join(r.err.split())
    assert f"warning: {alpha}: " in flat and f"{key} will not be kept" in flat, flat
    assert str(beta) + ":" not in flat


def _bare_pair(root: Path, second: str = "10.0.0.2") -> tuple[Path, Path]:
    alpha, beta = _tutorial_pair(root)
    alpha.write_text(alpha.read_text().replace("Address = 10.0.0.1/24", "Address = 10.0.0.1"))
    beta.write_text(
        beta.read_text()
        .replace("Address = 10.0.0.2/24", f"Address = {second}")
        .replace("AllowedIPs = 10.0.0.1/32", "AllowedIPs = 10.0.0.1/32")
    )
    alpha.write_text(
        alpha.read_text().replace("AllowedIPs = 10.0.0.2/32", f"AllowedIPs = {second}/32")
    )
    return alpha, beta


def test_the_tutorial_pair_without_prefixes_imports_with_an_inferred_network(
    tmp_path: Path,
) -> None:
    alpha, beta = _bare_pair(tmp_path / "orig")
    inv = tmp_path / "w.toml"
    r = cli("-f", inv, "import", alpha, beta)
    assert r.code == 0, r
    assert 'cidr = "10.0.0.0/24"' in inv.read_text()
    flat = " ".join(r.err.split())
    assert (
        "using 10.0.0.0/24, the smallest network of /24 or larger that holds every address" in flat
    )
    assert "--cidr" in flat


def test_the_inferred_network_holds_every_address(tmp_path: Path) -> None:
    alpha, beta = _bare_pair(tmp_path / "orig", second="10.0.3.9")
    inv = tmp_path / "w.toml"
    r = cli("-f", inv, "import", alpha, beta)
    assert r.code == 0, r
    assert 'cidr = "10.0.0.0/22"' in inv.read_text()


def test_cidr_chooses_the_network(tmp_path: Path) -> None:
    alpha, beta = _bare_pair(tmp_path / "orig")
    inv = tmp_path / "w.toml"
    r = cli("-f", inv, "import", "--cidr", "10.0.0.0/16", alpha, beta)
    assert r.code == 0, r
    assert 'cidr = "10.0.0.0/16"' in inv.read_text()
    assert "inferred" not in r.err and "smallest" not in r.err
    other = tmp_path / "x.toml"
    r = cli("-f", other, "import", "--cidr", "10.9.0.0/24", alpha, beta)
    assert r.code == 2 and "is not a host address of the mesh network 10.9.0.0/24" in r.err
    assert not other.exists()


def test_different_prefixes_still_name_the_networks_and_offer_cidr(tmp_path: Path) -> None:
    alpha, beta = _tutorial_pair(tmp_path / "orig")
    beta.write_text(beta.read_text().replace("10.0.0.2/24", "10.0.0.2/25"))
    r = cli("-f", tmp_path / "w.toml", "import", alpha, beta)
    assert r.code == 2
    assert "different IPv4 networks: 10.0.0.0/24, 10.0.0.0/25" in r.err and "--cidr" in r.err
    assert cli("-f", tmp_path / "w.toml", "import", "--cidr", "10.0.0.0/24", alpha, beta).code == 0
