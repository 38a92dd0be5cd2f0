"""Rendered configs against the real tools: wg-quick strip, wg setconf into wireguard-go, wg showconf."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.helpers import cli
from tests.netns import run_in, throwaway_netns
from wiremesh.codec.wgquick import WgQuickConfig, parse

pytestmark = pytest.mark.root


def _inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "wiremesh.toml"
    assert cli("-f", inv, "init", "--cidr", "10.9.0.0/24", "--cidr6", "fd00:9::/64").code == 0
    nodes = [
        ["a", "--endpoint", "203.0.113.1"],
        ["b", "--endpoint", "[2001:db8::2]:51000", "--listen-port", "51000"],
        ["c", "--endpoint", "203.0.113.3", "--site", "x", "--private-endpoint", "192.0.2.3"],
        ["d", "--endpoint", "203.0.113.4", "--site", "x", "--private-endpoint", "192.0.2.4:5000"],
        ["e", "--allowed-ip", "172.16.5.0/24", "--allowed-ip", "fd10::/64"],
    ]
    for args in nodes:
        r = cli("-f", inv, "node", "add", *args)
        assert r.code == 0, r.err
    return inv


def _semantics(config: WgQuickConfig) -> object:
    peers = {
        (
            str(p.public_key),
            str(p.endpoint),
            frozenset(map(str, p.allowed_ips)),
            p.persistent_keepalive,
        )
        for p in config.peers
    }
    key = config.interface.private_key
    return (key.reveal() if key else None, config.interface.listen_port, frozenset(peers))


def test_rendered_configs_load_into_wireguard_go(tmp_path: Path) -> None:
    inv = _inventory(tmp_path)
    out = tmp_path / "out"
    r = cli("-f", inv, "render", "--out", out)
    assert r.code == 0, r.err
    configs = sorted(out.glob("*/wg0.conf"))
    assert len(configs) == 5
    with throwaway_netns() as ns:
        for path in configs:
            stripped = subprocess.run(
                ["wg-quick", "strip", str(path)], capture_output=True, text=True, check=True
            ).stdout
            strip_file = tmp_path / f"{path.parent.name}.stripped"
            strip_file.write_text(stripped)
            # wireguard-go in the foreground, in the background of this shell; the PID namespace
            # takes it down when the shell exits.
            script = (
                "WG_PROCESS_FOREGROUND=1 wireguard-go wg0 >/dev/null 2>&1 & "
                "for i in $(seq 50); do [ -S /run/wireguard/wg0.sock ] && break; sleep 0.1; done; "
                f"wg setconf wg0 {strip_file}; wg showconf wg0"
            )
            result = run_in(ns, script)
            assert result.returncode == 0, result.stderr
            shown = parse(result.stdout, f"showconf of {path.parent.name}")
            assert _semantics(shown) == _semantics(parse(path.read_text())), path.parent.name
