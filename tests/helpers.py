"""Shared test helpers: run the real entry point, make keys quickly, build inventories."""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from wiremesh.cli.main import main
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.inventory import Inventory, MeshSettings, Node
from wiremesh.model.keys import PrivateKey
from wiremesh.model.names import NodeName


@dataclass(frozen=True)
class Result:
    """What one CLI run returned and printed."""

    code: int
    out: str
    err: str


def cli(*args: str | Path, env: dict[str, str] | None = None) -> Result:
    """Run ``wiremesh ARGS`` through the real entry point, capturing its output."""
    out, err = io.StringIO(), io.StringIO()
    code = main([str(a) for a in args], env=env or {}, stdout=out, stderr=err)
    return Result(code, out.getvalue(), err.getvalue())


def wg_pubkey(private: str) -> str:
    """The real ``wg pubkey`` of a base64 private key."""
    return subprocess.run(
        ["wg", "pubkey"], input=private + "\n", capture_output=True, text=True, check=True
    ).stdout.strip()


_KEYS: list[PrivateKey] = []


def keys(n: int) -> list[PrivateKey]:
    """``n`` distinct private keys (made once per test run and reused)."""
    while len(_KEYS) < n:
        _KEYS.append(PrivateKey.generate())
    return _KEYS[:n]


def simple_inventory(n: int, cidr: str = "10.0.0.0/16") -> tuple[Inventory, list[PrivateKey]]:
    """A mesh of ``n`` public nodes with keys."""
    private = keys(n)
    nodes = tuple(
        Node(
            name=NodeName(f"n{i}"),
            address=IPv4Address(int(IPv4Network(cidr).network_address) + i + 1),
            endpoint=Endpoint(IPv4Address(f"198.51.100.{(i % 200) + 10}"), 51820 + i // 200),
            public_key=private[i].public_key(),
        )
        for i in range(n)
    )
    return Inventory(MeshSettings(cidr=IPv4Network(cidr)), nodes), private


# What breaks out of a value in one format or another, and what ipaddress lets through after '%'.
NASTY_TEXT = [
    "\n",
    "\r",
    "\r\n",
    "#",
    " #",
    "%",
    "%eth0",
    "%x\nPreUp = touch /root/marker #",
    "%a;id",
    ";",
    "$(id)",
    "`id`",
    "\x00",
    "\t",
    "\x0b",
    "\x0c",
    "\x85",
    "\u2028",
    "\u2029",
    " ",
    "=",
    "[",
    "]",
    ":",
    ",",
    "'",
    '"',
    "\\",
    "é",
    "ℌ",
    "\ufeff",
    "-",
    ".",
    "/",
    "\nPostUp = touch /root/pwned",
    "\n[Peer]\nPublicKey = x",
]


ONE_NODE = """\
version = 1

[mesh]
name = "t"
cidr = "10.0.0.0/24"

[[node]]
name = "a"
endpoint = "203.0.113.1"
"""
"""A valid one-node inventory (for tests that break it in one place)."""


def write_inventory(directory: Path, text: str = ONE_NODE) -> Path:
    """``directory/wiremesh.toml`` holding ``text``."""
    path = directory / "wiremesh.toml"
    path.write_text(text)
    return path
