"""A policy resolved against its inventory: every reference as a set of nodes, every rule in the
order it is evaluated (the user's, the presets', the built-in ping rule), each with its nodes.

Evaluation and compilation both work on this one value, so they cannot disagree about who is in a
group or which rule comes first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from wiremesh.errors import ValidationError
from wiremesh.model.addressing import IPAddress, IPNetwork
from wiremesh.model.inventory import Inventory, Node
from wiremesh.model.names import NodeName
from wiremesh.model.policy.ports import PortSpec, Proto
from wiremesh.model.policy.presets import PRESETS, derived_members
from wiremesh.model.policy.rules import EVERYONE, Action, Policy, Rule

PING_RULE = Rule(
    sources=(EVERYONE,),
    targets=(EVERYONE,),
    ports=(PortSpec(Proto.ICMP),),
    action=Action.ALLOW,
    origin="built-in ping rule",
)
"""Every node may ping every node (``status --ping`` needs it). It comes after the user's rules and
the presets, so a rule covering ``icmp`` (or ``any``) decides first: a deny rule "says otherwise";
``ping = false`` in ``[policy]`` drops it altogether."""


@dataclass(frozen=True)
class ResolvedRule:
    """A rule with the nodes its references stand for."""

    rule: Rule
    sources: frozenset[NodeName]
    targets: frozenset[NodeName]


@dataclass(frozen=True)
class ResolvedPolicy:
    """A policy and its inventory's nodes, ready to evaluate and compile."""

    policy: Policy
    nodes: tuple[Node, ...]
    members: Mapping[str, frozenset[NodeName]]
    """Every reference that may appear in a rule or test: ``*``, node names, groups."""
    rules: tuple[ResolvedRule, ...]
    """In evaluation order: the user's rules, the presets' rules, the built-in ping rule."""
    guard_exempt: tuple[str, ...]
    """Interfaces besides the mesh interface and ``lo`` that the guard leaves alone."""

    def of(self, ref: str) -> frozenset[NodeName]:
        """The nodes ``ref`` stands for."""
        try:
            return self.members[ref]
        except KeyError:
            raise ValidationError(f"policy: unknown group or node {ref!r}") from None

    @cached_property
    def _by_name(self) -> dict[str, Node]:
        return {node.name: node for node in self.nodes}

    @cached_property
    def sources(self) -> dict[str, tuple[IPNetwork, ...]]:
        """Each node's source networks (:func:`node_sources`), computed once."""
        return {node.name: node_sources(node) for node in self.nodes}

    def source_set(self, ref: str, family: int) -> frozenset[IPNetwork]:
        """The source networks of ``ref``'s members in one family (memoised per policy)."""
        key = (ref, family)
        cache = self._source_sets
        if key not in cache:
            sources = self.sources
            cache[key] = frozenset(
                net for name in self.of(ref) for net in sources[name] if net.version == family
            )
        return cache[key]

    @cached_property
    def _source_sets(self) -> dict[tuple[str, int], frozenset[IPNetwork]]:
        return {}

    def node(self, name: str) -> Node:
        """The node called ``name``."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ValidationError(f"policy: no node named {name!r}") from None


def node_sources(node: Node) -> tuple[IPNetwork, ...]:
    """The source networks that stand for ``node`` on other hosts: its overlay addresses (/32 and
    /128) and its routed ``allowed_ips``.

    WireGuard accepts a packet from a peer only when its source address is in that peer's allowed
    IPs (cryptokey routing, wg(8)), so packets from a subnet routed to a node can only have come
    through that node: they count as the node's. (A relay forwards for the nodes it relays: their
    packets keep their own source addresses.)
    """
    out: list[IPNetwork] = [host_network(node.address)]
    if node.address6 is not None:
        out.append(host_network(node.address6))
    out.extend(node.allowed_ips)
    return tuple(out)


def host_network(address: IPAddress) -> IPNetwork:
    """The host network (/32 or /128) of an address."""
    if isinstance(address, IPv4Address):
        return IPv4Network(address)
    return IPv6Network(address)


def references(nodes: tuple[Node, ...]) -> dict[str, frozenset[NodeName]]:
    """Every reference and its members: ``*``, each node (a group of one), each node group, and the
    groups derived from ``k3s_role``."""
    members: dict[str, set[NodeName]] = {}
    for node in nodes:
        for group in node.groups:
            members.setdefault(group, set()).add(node.name)
    out = {name: frozenset(names) for name, names in members.items()}
    out.update(derived_members(nodes))
    out.update({node.name: frozenset((node.name,)) for node in nodes})
    out[EVERYONE] = frozenset(n.name for n in nodes)
    return out


def evaluation_order(policy: Policy) -> tuple[Rule, ...]:
    """The user's rules, then each preset's, then the built-in ping rule (while ``ping`` is on)."""
    rules = list(policy.rules)
    for name in policy.presets:
        rules.extend(PRESETS[name].rules)
    if policy.ping:
        rules.append(PING_RULE)
    return tuple(rules)


def resolve_policy(policy: Policy, nodes: tuple[Node, ...]) -> ResolvedPolicy:
    """Resolve ``policy`` against ``nodes`` (an inventory whose policy passed its checks)."""
    members = references(nodes)

    def of(refs: tuple[str, ...]) -> frozenset[NodeName]:
        out: frozenset[NodeName] = frozenset()
        for ref in refs:
            if ref not in members:
                raise ValidationError(f"policy: unknown group or node {ref!r}")
            out |= members[ref]
        return out

    rules = tuple(ResolvedRule(r, of(r.sources), of(r.targets)) for r in evaluation_order(policy))
    exempt = list(policy.guard_exempt)
    for name in policy.presets:
        exempt += [i for i in PRESETS[name].guard_exempt if i not in exempt]
    return ResolvedPolicy(policy, nodes, members, rules, tuple(exempt))


def resolve(inventory: Inventory) -> ResolvedPolicy | None:
    """The inventory's policy resolved, or None when it has no ``[policy]``."""
    if inventory.policy is None:
        return None
    return resolve_policy(inventory.policy, inventory.nodes)
