"""Size of the compiled policy per host: bytes of the ``nft -f`` transaction, rules, set elements.

Run from the repository root, with the project's venv::

    .venv/bin/python bench/policy_size.py                 # N = 30 and 1000
    .venv/bin/python bench/policy_size.py --sizes 30,300,1000

For each N, a mesh of N nodes with a realistic policy (pure: nothing is sent anywhere):

* groups: 40 % ``app``, 20 % ``web``, 10 % ``db``, 2 nodes ``monitor``, 2 nodes ``ops``; k3s: 3
  servers and 30 % agents (``k3s_role``); every 20th node routes a /24 (``allowed_ips``); an IPv6
  overlay (``cidr6``), so every rule exists for both families;
* ``[policy]``: ``default = "deny"``, ``presets = ["k3s"]``, ``guard = true``, and the rules
  ops → * tcp/22, * → db tcp/22 deny, web → app tcp/8080, app → db tcp/5432 and tcp/6432 (pgbouncer),
  monitor → * tcp/9100 (node exporter) and tcp/9187 (postgres exporter, to db).

Printed per kind of host (the largest host of each kind): the transaction's size in bytes, its rules,
its set elements, and, for comparison, how many rules the same policy would take without sets (one
rule per source network and port). Set elements grow with N; rules do not. Also the time to compile
and render every host's table.

With ``--nft`` (root), the largest table of each N is also loaded with the real nft into a throwaway
network namespace (deleted afterwards): the time of ``nft -c -f`` (check), of ``nft -f`` (the full
replacement: into an empty namespace, then over itself) and of an element-only
transaction adding one node to a group, each the median of 5 runs.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from wiremesh.codec.nftables import element_transaction, render
from wiremesh.model.inventory import Inventory, MeshSettings, Node, validate
from wiremesh.model.names import NodeName
from wiremesh.model.nft import HostFirewall
from wiremesh.model.nft_changes import AddElements
from wiremesh.model.policy.compile import compile_inventory
from wiremesh.model.policy.ports import PortSpec
from wiremesh.model.policy.rules import Action, Policy, Rule


def _rule(
    index: int,
    sources: str,
    targets: str,
    ports: Sequence[str],
    action: Action = Action.ALLOW,
    overlay_only: bool = False,
) -> Rule:
    specs = tuple(PortSpec.parse(p, "ports") for p in ports)
    return Rule((sources,), (targets,), specs, action, overlay_only, origin=f"rule {index}")


POLICY = Policy(
    default=Action.DENY,
    rules=(
        _rule(1, "ops", "*", ["tcp/22"]),
        _rule(2, "*", "db", ["tcp/22"], action=Action.DENY),
        _rule(3, "web", "app", ["tcp/8080"]),
        _rule(4, "app", "db", ["tcp/5432", "tcp/6432"], overlay_only=True),
        _rule(5, "monitor", "*", ["tcp/9100"]),
        _rule(6, "monitor", "db", ["tcp/9187"]),
    ),
    presets=("k3s",),
    guard=True,
)


def mesh(count: int) -> Inventory:
    """A mesh of ``count`` nodes with :data:`POLICY`."""
    nodes = []
    for i in range(count):
        share = (i * 37) % 100  # spread the groups over the mesh
        groups: list[str] = []
        if share < 40:
            groups.append("app")
        elif share < 60:
            groups.append("web")
        elif share < 70:
            groups.append("db")
        if i in (1, 2):
            groups.append("monitor")
        if i in (3, 4):
            groups.append("ops")
        role = "server" if i in (5, 6, 7) else ("agent" if share >= 70 else None)
        allowed = (IPv4Network(f"172.{16 + i // 256}.{i % 256}.0/24"),) if i % 20 == 0 else ()
        nodes.append(
            Node(
                name=NodeName(f"node-{i:04d}"),
                address=IPv4Address(int(IPv4Network("10.10.0.0/16").network_address) + i + 1),
                address6=IPv6Address(int(IPv6Network("fd00:10::/64").network_address) + i + 1),
                allowed_ips=allowed,
                groups=tuple(groups),
                k3s_role=role,
            )
        )
    settings = MeshSettings(cidr=IPv4Network("10.10.0.0/16"), cidr6=IPv6Network("fd00:10::/64"))
    return validate(Inventory(settings, tuple(nodes), policy=POLICY))


def kind(node: Node) -> str:
    """A host's kind, for the table."""
    parts = list(node.groups) + ([f"k3s-{node.k3s_role}"] if node.k3s_role else [])
    return "+".join(parts) or "(no group)"


@dataclass(frozen=True)
class Size:
    """One host's figures."""

    kind: str
    bytes: int
    rules: int
    elements: int
    without_sets: int


def size(fw: HostFirewall, node: Node) -> Size:
    """The figures of one host's table."""
    table = fw.table
    members = {s.name: len(s.elements) for s in table.sets}
    flat = sum(
        members.get(rule.saddr_set, 1) if rule.saddr_set else 1
        for chain in table.chains
        for rule in chain.rules
    )
    return Size(kind(node), len(render(fw).encode()), table.rule_count, table.element_count, flat)


def _nft(netns: str, text: str, *args: str) -> float:
    started = time.perf_counter()
    subprocess.run(
        ["ip", "netns", "exec", netns, "nft", *args, "-f", "-"], input=text, text=True, check=True
    )
    return time.perf_counter() - started


def load_times(fw: HostFirewall) -> str:
    """Median seconds of nft check, full load, and an element-only change, in a throwaway netns."""
    netns = f"wm-bench-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        text = render(fw)
        biggest = max(fw.table.sets, key=lambda s: len(s.elements))
        add = AddElements(biggest.name, biggest.label, (IPv4Network("10.255.255.1/32"),))
        if biggest.family == 6:
            add = AddElements(biggest.name, biggest.label, (IPv6Network("fd00:ffff::1/128"),))
        elements = element_transaction([add])
        remove = elements.replace("add element", "delete element")
        check = statistics.median(_nft(netns, text, "-c") for _ in range(5))
        full = statistics.median(_nft(netns, text) for _ in range(5))
        adds = []
        for _ in range(5):
            adds.append(_nft(netns, elements))
            _nft(netns, remove)  # untimed: back to the compiled table
        one = statistics.median(adds)
        return f"nft -c {check * 1000:.0f} ms, nft -f {full * 1000:.0f} ms, one element {one * 1000:.0f} ms"
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


def report(count: int, with_nft: bool = False) -> None:
    """Print the figures for a mesh of ``count`` nodes."""
    inventory = mesh(count)
    started = time.perf_counter()
    firewalls = compile_inventory(inventory)
    texts = {name: render(fw) for name, fw in firewalls.items() if fw is not None}
    elapsed = time.perf_counter() - started
    largest: dict[str, Size] = {}
    for node in inventory.nodes:
        fw = firewalls[node.name]
        if fw is None:
            continue
        found = size(fw, node)
        if found.kind not in largest or found.bytes > largest[found.kind].bytes:
            largest[found.kind] = found
    total = sum(len(t.encode()) for t in texts.values())
    print(
        f"\n{count} nodes: {len(texts)} tables, {total / 1024:.0f} KiB in all; compile + render "
        f"of every host {elapsed * 1000:.0f} ms ({elapsed / len(texts) * 1000:.2f} ms per host)"
    )
    print(f"  {'host kind':<26} {'bytes':>9} {'rules':>6} {'elements':>9} {'rules w/o sets':>15}")
    for item in sorted(largest.values(), key=lambda s: -s.bytes):
        print(
            f"  {item.kind:<26} {item.bytes:>9,} {item.rules:>6} {item.elements:>9,} "
            f"{item.without_sets:>15,}"
        )
    if with_nft:
        fws = [fw for fw in firewalls.values() if fw is not None]
        fw = max(fws, key=lambda f: len(texts[f.node]))
        print(f"  largest table ({fw.node}) with the real nft: {load_times(fw)}")


def main() -> None:
    """Parse the arguments and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="30,1000", help="comma-separated mesh sizes")
    parser.add_argument("--nft", action="store_true", help="also time real nft loads (root)")
    args = parser.parse_args()
    if args.nft and os.geteuid() != 0:
        parser.error("--nft needs root (it makes a throwaway network namespace)")
    for count in (int(s) for s in args.sizes.split(",")):
        report(count, args.nft)


if __name__ == "__main__":
    main()
