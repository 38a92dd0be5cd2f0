"""Issue 10, item 1: every file wiremesh writes on a host holds exactly the keys and values meant.

The inventories here are raw TOML data, full of adversarial strings (newlines, '#', zone ids, ';',
'$()', unicode line breaks, NUL...), fed through the real validation (``parse_data``). For every one
that passes, each rendered file is read back with a parser of its own format and must give exactly
the values wiremesh meant, and nothing else: no extra line, no extra key.

- wg-quick: :func:`wiremesh.codec.wgquick.parse`, plus a line-level check that each line is a
  comment, a section or one known ``Key = Value``;
- /etc/hosts block: a hosts(5) reader (fields split on blanks, ``#`` starts a comment);
- sysctl.d file: :func:`wiremesh.codec.sysctl.parse`;
- k3s config.yaml: PyYAML (YAML 1.1, as k3s' gopkg.in/yaml.v2), and a line-level check.

One property checks all four formats on each generated inventory, over 2,000 examples (``MANY``).
"""

from __future__ import annotations

import re
from dataclasses import replace
from ipaddress import ip_address
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.helpers import NASTY_TEXT, keys
from wiremesh.codec import sysctl
from wiremesh.codec.inventory_toml import parse_data
from wiremesh.codec.wgquick import KeyFile, LiteralKey, parse, render
from wiremesh.errors import ValidationError
from wiremesh.model.addressing import IPAddress
from wiremesh.model.inventory import Inventory
from wiremesh.model.k3s import K3sRequest, node_config
from wiremesh.model.topology import forwarding_needed, hosts_block, wanted_mesh
from wiremesh.ops.k3s import managed_text
from wiremesh.remote.scripts import hosts_markers

pytestmark = pytest.mark.slow  # ~20 s per property; deselect with -m "not slow"

MANY = settings(
    max_examples=2000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

NASTY = NASTY_TEXT


@st.composite
def tainted(draw: st.DrawFn, base: st.SearchStrategy[str], odds: int) -> str:
    """``base``'s value, or one in ``odds`` times that value with nasty text inserted somewhere."""
    text = draw(base)
    if odds == 0 or draw(st.integers(1, odds)) != 1:
        return text
    where = draw(st.integers(0, len(text)))
    junk = draw(st.sampled_from(NASTY) | st.text(max_size=4))
    return text[:where] + junk + text[where:]


# Plain strategies (no from_regex: generating from a regex made each example ten times slower).
LABEL = st.builds(
    lambda w, i: f"{w}{i}" if i else w,
    st.sampled_from(["a", "web", "db-1", "x-y", "node", "n", "m0", "q"]),
    st.integers(0, 20),
)
DNS = st.builds(
    lambda w, d: f"{w}.{d}",
    st.sampled_from(["vpn", "Web-1", "a", "x9"]),
    st.sampled_from(["example.com", "test.org", "example.com."]),
)
V4 = st.builds(lambda a, b: f"198.51.{a}.{b}", st.integers(0, 255), st.integers(1, 254))
V6 = st.builds(lambda a: f"[2001:db8::{a:x}]", st.integers(1, 0xFFFF))
ZONED = st.builds(lambda z: f"[fe80::1%{z}]", st.sampled_from(["eth0", "a;id", "x\nPreUp = id #"]))
PORT = st.integers(1, 65535)


@st.composite
def endpoints(draw: st.DrawFn, odds: int) -> str:
    host = draw(st.one_of(V4, V6, DNS, ZONED) if odds else st.one_of(V4, V6, DNS))
    if draw(st.booleans()):
        host = f"{host}:{draw(PORT)}"
    return draw(tainted(st.just(host), odds))


@st.composite
def inventories(draw: st.DrawFn) -> dict[str, Any]:
    """Raw inventory data as tomllib would give it. A third of them are clean (to exercise the
    renderers on many valid meshes), the others have nasty text in some fields, at a random rate."""
    odds = draw(st.sampled_from([0, 0, 3, 8, 20, 40]))

    def t(base: st.SearchStrategy[str]) -> str:
        return draw(tainted(base, odds))

    n = draw(st.integers(1, 5))
    mesh: dict[str, Any] = {
        "name": t(LABEL),
        "cidr": t(st.sampled_from(["10.20.0.0/24", "10.77.0.0/16", "172.16.0.0/24"])),
    }
    zone = ["%x"] if odds else [""]  # zone ids in otherwise valid values: only in tainted runs
    if draw(st.booleans()):
        mesh["cidr6"] = t(st.sampled_from(["fd00:77::/64", f"fd00:77::{zone[0]}/64"]))
    if draw(st.booleans()):
        mesh["interface"] = t(st.sampled_from(["wg0", "wg-mesh", "wm.1"]))
    if draw(st.booleans()):
        mesh["mtu"] = draw(st.sampled_from([1280, 1420, "auto"]))
    nodes = []
    names = draw(st.lists(LABEL, min_size=n, max_size=n, unique=True))
    public = keys(n)
    for i, name in enumerate(names):
        node: dict[str, Any] = {"name": t(st.just(name))}
        if draw(st.booleans()):
            node["endpoint"] = draw(endpoints(odds))
        if "cidr6" in mesh and draw(st.integers(0, 3)) == 0:
            node["address6"] = t(st.sampled_from([f"fd00:77::{i + 100:x}{z}" for z in ("", *zone)]))
        if draw(st.booleans()):
            node["site"] = t(st.sampled_from(["fra", "hk"]))
            node["private_endpoint"] = draw(endpoints(odds))
        if draw(st.integers(0, 3)) == 0:
            node["listen_port"] = draw(PORT)
        if draw(st.integers(0, 3)) == 0:
            subnet = st.sampled_from([f"192.168.{i}.0/24", f"fd10:{i}::{zone[0]}/64"])
            node["allowed_ips"] = [t(subnet)]
        if draw(st.integers(0, 3)) == 0:
            node["ssh"] = t(st.sampled_from(["root@198.51.100.1", "admin@web:2222"]))
        if draw(st.booleans()):
            node["public_key"] = str(public[i].public_key())
        if draw(st.integers(0, 2)) == 0:
            node["k3s_role"] = draw(st.sampled_from(["server", "agent"]))
        nodes.append(node)
    return {"version": 1, "mesh": mesh, "node": nodes}


def _valid(data: dict[str, Any]) -> Inventory | None:
    try:
        inventory = parse_data(data, "fuzz").inventory
    except ValidationError:
        event("refused by validation")
        return None
    event("valid")
    # Every peer needs a key to be rendered: give the keyless ones theirs (as render/apply do).
    private = keys(len(inventory.nodes))
    nodes = tuple(
        n if n.public_key is not None else replace(n, public_key=private[i].public_key())
        for i, n in enumerate(inventory.nodes)
    )
    return replace(inventory, nodes=nodes)


WG_KEYS = {
    "interface": {"PrivateKey", "Address", "ListenPort", "MTU"},
    "peer": {"PublicKey", "Endpoint", "AllowedIPs", "PersistentKeepalive"},
}


def _wg_lines(text: str) -> int:
    """Check every line of a wg-quick file is a comment, a section or a known key; count keys."""
    assert text.isascii()
    section = None
    count = 0
    for line in text.split("\n"):
        if not line or line.startswith("# "):
            continue
        if line in ("[Interface]", "[Peer]"):
            section = line[1:-1].lower()
            continue
        key, sep, value = line.partition(" = ")
        assert sep and section is not None and key in WG_KEYS[section], line
        assert "#" not in value and value == value.strip() and value
        count += 1
    return count


def check_wg_quick(inventory: Inventory) -> None:
    """Each node's wg-quick file (as apply sends it, and with a literal key as render writes it)
    parses back into exactly its device: the same values, no extra key, no extra line."""
    private = keys(len(inventory.nodes))
    memo: dict[int, str] = {}
    for i, (name, device) in enumerate(wanted_mesh(inventory).items()):
        for key in (KeyFile("/etc/wireguard/wg0.key"), LiteralKey(private[i])):
            text = render(device, key, f"node {name} of mesh {inventory.mesh.name}", memo)
            config = parse(text)
            iface = config.interface
            assert iface.addresses == device.interface.addresses
            assert iface.listen_port == device.interface.listen_port
            assert iface.mtu == device.interface.mtu
            assert iface.extra == ()
            literal = isinstance(key, LiteralKey)
            assert iface.private_key == (private[i] if literal else None)
            assert len(config.peers) == len(device.peers)
            expected = 2 + (iface.mtu is not None) + literal
            for section, peer in zip(config.peers, device.peers, strict=True):
                assert section.comment == peer.name
                assert section.public_key == peer.public_key
                assert section.endpoint == peer.endpoint
                assert section.allowed_ips == peer.allowed_ips
                assert section.persistent_keepalive == peer.persistent_keepalive
                assert section.extra == ()
                expected += 1 + (peer.endpoint is not None) + bool(peer.allowed_ips)
                expected += bool(peer.persistent_keepalive)
            assert _wg_lines(text) == expected


def _hosts_entries(text: str) -> list[tuple[str, ...]]:
    """hosts(5): '#' starts a comment, fields are separated by blanks; one entry per line."""
    out = []
    for line in text.split("\n"):
        fields = tuple(line.split("#", 1)[0].split())
        if fields:
            out.append(fields)
    return out


def check_hosts_block(inventory: Inventory) -> None:
    """The /etc/hosts block holds one entry per address: the address and ``<node>.<mesh>``."""
    begin, end = hosts_markers(inventory.mesh.name)
    lines = hosts_block(inventory)
    block = "\n".join((begin, *lines, end)) + "\n"
    expected: list[tuple[IPAddress, str]] = []
    for node in inventory:
        name = f"{node.name}.{inventory.mesh.name}"
        expected.append((node.address, name))
        if node.address6 is not None:
            expected.append((node.address6, name))
    entries = _hosts_entries(block)
    assert len(entries) == len(expected) == len(lines)
    for fields, (address, name) in zip(entries, expected, strict=True):
        assert len(fields) == 2
        assert ip_address(fields[0]) == address and "%" not in fields[0]
        assert fields[1] == name
    assert block.split("\n")[1 : 1 + len(lines)] == list(lines)  # the markers stay comments


def check_sysctl(inventory: Inventory) -> None:
    """Each node's sysctl.d file holds exactly its forwarding settings."""
    for node in inventory:
        v4, v6 = forwarding_needed(inventory, node)
        settings_ = sysctl.forwarding(v4, v6)
        text = sysctl.render(settings_)
        assert sysctl.parse(text) == settings_
        assert len([line for line in text.split("\n") if line]) == 1 + len(settings_)


TOKEN_FILES = st.one_of(
    st.none(),
    st.sampled_from(["/etc/rancher/k3s/token", "/var/lib/token"]),
    tainted(st.just("/etc/rancher/k3s/token"), 1),
)


def _yaml_lines(text: str) -> int:
    """Every line is a comment, ``key: value``, ``key:`` or a ``  - item``; count the keys."""
    count = 0
    for line in text.split("\n"):
        if not line or line.startswith("#") or line.startswith('  - "'):
            continue
        assert re.fullmatch(r"[a-z0-9-]+:( .+)?", line), line
        count += 1
    return count


def check_k3s(inventory: Inventory, token_file: str | None) -> None:
    """Each k3s node's config.yaml reads back (YAML 1.1) as exactly its settings."""
    for node in inventory:
        if node.k3s_role is None:
            continue
        try:
            config = node_config(inventory, node.name, K3sRequest(token_file=token_file))
        except ValidationError:
            event("k3s config refused")
            continue
        text = managed_text(inventory, config)
        expected = {k: list(v) if isinstance(v, tuple) else v for k, v in config.settings}
        assert yaml.safe_load(text) == expected
        assert _yaml_lines(text) == len(config.settings)


@MANY
@given(inventories(), TOKEN_FILES)
def test_every_file_written_on_hosts_holds_exactly_what_was_meant(
    data: dict[str, Any], token_file: str | None
) -> None:
    inventory = _valid(data)
    if inventory is None:
        return
    check_wg_quick(inventory)
    check_hosts_block(inventory)
    check_sysctl(inventory)
    check_k3s(inventory, token_file)
