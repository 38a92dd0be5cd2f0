"""Hypothesis strategies for policy tests: random meshes with groups, k3s roles, routed subnets, an
optional IPv6 overlay, and random policies over them (always valid ones)."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address

from hypothesis import strategies as st

from wiremesh.model.addressing import IPAddress, IPNetwork
from wiremesh.model.inventory import Inventory, MeshSettings, Node, check
from wiremesh.model.names import NodeName
from wiremesh.model.nft_eval import Packet
from wiremesh.model.policy.ports import PortSpec, Probe, Proto
from wiremesh.model.policy.presets import DERIVED_GROUPS
from wiremesh.model.policy.resolve import node_sources
from wiremesh.model.policy.rules import EVERYONE, Action, Policy, Rule

GROUPS = ("app", "db", "web", "1ops")
PORTS = (
    "tcp/22",
    "tcp/5432",
    "tcp/5000-5500",
    "tcp/1-1024",
    "udp/53",
    "udp/8472",
    "udp/60000-65535",
    "icmp",
    "any",
)
PROBES = tuple(
    [Probe(Proto.TCP, p) for p in (22, 80, 1024, 1025, 4999, 5000, 5432, 5500, 5501, 65535)]
    + [Probe(Proto.UDP, p) for p in (53, 54, 8472, 59999, 60000, 65535)]
    + [Probe(Proto.ICMP)]
)
INTERFACES = ("eth0", "docker0", "cni0", "flannel.1", "lo")

# Built once: making strategies inside the composite for every example costs more than drawing.
_GROUP_LISTS = st.lists(st.sampled_from(GROUPS), unique=True, max_size=2)
_ROLES = st.sampled_from([None, None, "server", "agent"])
_PORT_LISTS = st.lists(st.sampled_from(PORTS), min_size=1, max_size=3, unique=True)
_ACTIONS = st.sampled_from(list(Action))
_EXEMPT = st.sampled_from([(), ("docker0",)])


@st.composite
def meshes(draw: st.DrawFn, max_nodes: int = 6) -> Inventory:
    """A valid inventory with a policy."""
    count = draw(st.integers(2, max_nodes))
    dual = draw(st.booleans())
    nodes = []
    for i in range(count):
        allowed: list[IPNetwork] = []
        if draw(st.integers(0, 3)) == 0:
            allowed.append(IPv4Network(f"172.16.{i}.0/24"))
        if draw(st.integers(0, 5)) == 0:
            allowed.append(IPv6Network(f"fd10:{i}::/64"))
        nodes.append(
            Node(
                name=NodeName(f"n{i}"),
                address=IPv4Address(f"10.0.0.{i + 1}"),
                address6=IPv6Address(f"fd00::{i + 1}") if dual else None,
                allowed_ips=tuple(allowed),
                groups=tuple(draw(_GROUP_LISTS)),
                k3s_role=draw(_ROLES),
            )
        )
    refs = [EVERYONE, *(n.name for n in nodes), *GROUPS, *DERIVED_GROUPS]
    used = {g for n in nodes for g in n.groups}
    refs = [r for r in refs if r not in GROUPS or r in used]
    rules = []
    for index in range(draw(st.integers(0, 6))):
        ports = tuple(PortSpec.parse(p, "ports") for p in draw(_PORT_LISTS))
        overlay_only = draw(st.booleans()) and all(p.proto is not Proto.ANY for p in ports)
        rules.append(
            Rule(
                sources=tuple(
                    draw(st.lists(st.sampled_from(refs), min_size=1, max_size=2, unique=True))
                ),
                targets=tuple(
                    draw(st.lists(st.sampled_from(refs), min_size=1, max_size=2, unique=True))
                ),
                ports=ports,
                action=draw(_ACTIONS),
                overlay_only=overlay_only,
                origin=f"rule {index + 1}",
            )
        )
    presets = ("k3s",) if any(n.k3s_role for n in nodes) and draw(st.booleans()) else ()
    marked = any(r.overlay_only for r in rules) or bool(presets)
    policy = Policy(
        default=draw(_ACTIONS),
        rules=tuple(rules),
        presets=presets,
        ping=draw(st.booleans()),
        guard=marked and draw(st.booleans()),
        guard_exempt=draw(_EXEMPT),
    )
    mesh = MeshSettings(
        cidr=IPv4Network("10.0.0.0/24"), cidr6=IPv6Network("fd00::/64") if dual else None
    )
    inventory = Inventory(mesh, tuple(nodes), policy=policy)
    problems = check(inventory)
    assert not problems, [str(p) for p in problems]
    return inventory


def random_address(rnd: random.Random, net: IPNetwork) -> IPAddress:
    """An address inside ``net``."""
    offset = rnd.randrange(net.num_addresses) if net.num_addresses > 1 else 0
    return ip_address(int(net.network_address) + offset)


def source_address(rnd: random.Random, node: Node) -> IPAddress:
    """One of the addresses that stand for ``node``."""
    return random_address(rnd, rnd.choice(node_sources(node)))


def packet(iifname: str, saddr: IPAddress, probe: Probe, ct_state: str = "new") -> Packet:
    """The packet that opens ``probe`` (a SYN, a datagram, an echo request)."""
    if probe.proto is Proto.ICMP:
        proto = "icmp" if saddr.version == 4 else "icmpv6"
        return Packet(iifname, saddr, proto, icmp_type="echo-request", ct_state=ct_state)
    return Packet(iifname, saddr, str(probe.proto), dport=probe.port, ct_state=ct_state)
