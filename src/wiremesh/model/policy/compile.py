"""The compiler: a resolved policy as one nftables table per host (pure; text in
:mod:`wiremesh.codec.nftables`).

Decisions:

- Only traffic that *arrives on the mesh interface* is filtered (``iifname "wg0" jump mesh``), in
  the input hook: the policy is about connections to the nodes themselves. Forwarded traffic (to
  subnets routed to a node, or through a relay) is not filtered here; it is filtered where it ends,
  on the destination node, by its source address. Everything else goes on, untouched, to the other
  tables (k3s, docker, ufw, firewalld): in nftables every base chain on a hook sees the packet, an
  accept in one table does not override a drop in another, and a drop anywhere is final (nft(8),
  "CHAINS"; wiki.nftables.org "Netfilter hooks"). So our base chains have policy accept, and the
  only drops are inside chain ``mesh`` (mesh traffic) and of the guarded ports (guard).
- A host's table holds only the rules whose ``to`` holds the host, in evaluation order; each rule
  becomes one nft rule per source reference, address family and port spec, matching the source
  against the reference's set. ``counter`` on every decision, ``comment`` naming the policy rule,
  so that ``nft list table inet wiremesh`` answers "which rule let this in, and how often".
- Source sets hold each member's overlay addresses (/32, /128) and routed ``allowed_ips``
  (:func:`wiremesh.model.policy.resolve.node_sources`). IPv6 rules and sets exist when the mesh has
  IPv6 at all (``cidr6``, or an IPv6 ``allowed_ips`` anywhere): a mesh-wide choice, so that a node
  joining a group still changes only set elements.
- With ``default = "allow"`` a host needs no table unless a deny rule applies to it or it has a
  guard: then the compiler wants no table at all ("nothing installed").
"""

from __future__ import annotations

from wiremesh.errors import ValidationError
from wiremesh.model.inventory import Inventory, Node
from wiremesh.model.names import NodeName
from wiremesh.model.nft import (
    GUARD,
    INPUT,
    MESH,
    BaseHook,
    Element,
    HostFirewall,
    NftChain,
    NftRule,
    NftSet,
    NftTable,
    element_key,
    set_name,
)
from wiremesh.model.policy.ports import PortSpec, Probe, Proto
from wiremesh.model.policy.resolve import ResolvedPolicy, resolve
from wiremesh.model.policy.rules import Action

ESTABLISHED = frozenset({"established", "related"})
DEFAULT_DENY_COMMENT = "default deny"
GUARD_COMMENT = "guard: overlay only"
ALWAYS_EXEMPT = ("lo",)
"""The guard never touches loopback: local clients (kubectl on a server) use it."""


def families(inventory: Inventory) -> tuple[int, ...]:
    """The address families the mesh's rules are written for: 4, and 6 when it has IPv6."""
    v6 = inventory.mesh.cidr6 is not None or any(
        net.version == 6 for node in inventory.nodes for net in node.allowed_ips
    )
    return (4, 6) if v6 else (4,)


def _port_match(spec: PortSpec, family: int) -> NftRule:
    """The match part of one port spec (an NftRule used as a bag of fields)."""
    if spec.proto is Proto.ANY:
        return NftRule()
    if spec.proto is Proto.ICMP:
        return NftRule(proto="icmp" if family == 4 else "icmpv6", icmp_type="echo-request")
    return NftRule(proto=str(spec.proto), dports=(spec.low, spec.high))


def _elements(resolved: ResolvedPolicy, ref: str, family: int) -> frozenset[Element]:
    """The source networks of ``ref`` in one family (the same on every host: computed once)."""
    return resolved.source_set(ref, family)


def guard_ports(resolved: ResolvedPolicy, node: NodeName) -> tuple[PortSpec, ...]:
    """The overlay-only ports the guard drops on ``node`` (empty when the guard is off): those of
    the rules marked overlay-only whose ``to`` holds the node."""
    if not resolved.policy.guard:
        return ()
    specs = {
        spec
        for item in resolved.rules
        if item.rule.overlay_only and node in item.targets
        for spec in item.rule.ports
        if spec.proto is not Proto.ANY
    }
    return tuple(sorted(specs))


def compile_host(
    resolved: ResolvedPolicy, node: NodeName, interface: str, fams: tuple[int, ...] = (4,)
) -> HostFirewall | None:
    """The wanted table of ``node`` (None: no table wanted)."""
    policy = resolved.policy
    applicable = [item for item in resolved.rules if node in item.targets]
    guard = guard_ports(resolved, node)
    deny_default = policy.default is Action.DENY
    if not (deny_default or guard or any(i.rule.action is Action.DENY for i in applicable)):
        return None
    sets: dict[str, NftSet] = {}
    rules = [NftRule(ct_states=ESTABLISHED, verdict="accept")]
    for item in applicable:
        verdict = "accept" if item.rule.action is Action.ALLOW else "drop"
        for ref in item.rule.sources:
            for family in fams:
                name = set_name(ref, family)
                if name not in sets:
                    sets[name] = NftSet(name, family, _elements(resolved, ref, family))
                for spec in item.rule.ports:
                    match = _port_match(spec, family)
                    rules.append(
                        NftRule(
                            family=family,
                            saddr_set=name,
                            proto=match.proto,
                            dports=match.dports,
                            icmp_type=match.icmp_type,
                            counter=True,
                            verdict=verdict,
                            comment=item.rule.origin,
                        )
                    )
    if deny_default:
        rules.append(NftRule(counter=True, verdict="drop", comment=DEFAULT_DENY_COMMENT))
    else:
        while rules[-1].verdict == "accept" and len(rules) > 1:
            rules.pop()  # accepts after the last drop change nothing when the default allows
    chains = [
        NftChain(
            INPUT,
            BaseHook(),
            (NftRule(iifnames=frozenset({interface}), verdict="jump", target=MESH),),
        ),
        NftChain(MESH, None, tuple(rules)),
    ]
    exempt = tuple(i for i in resolved.guard_exempt if i not in (interface, *ALWAYS_EXEMPT))
    if guard:
        keep = frozenset({interface, *ALWAYS_EXEMPT, *exempt})
        guard_rules = [NftRule(iifnames=keep, verdict="return")]
        for spec in guard:
            # The public side may speak IPv6 whatever the mesh does: a guarded ping is dropped in
            # both families.
            for family in (4, 6) if spec.proto is Proto.ICMP else (4,):
                match = _port_match(spec, family)
                guard_rules.append(
                    NftRule(
                        proto=match.proto,
                        dports=match.dports,
                        icmp_type=match.icmp_type,
                        counter=True,
                        verdict="drop",
                        comment=GUARD_COMMENT,
                    )
                )
        chains.append(NftChain(GUARD, BaseHook(), tuple(guard_rules)))
    table = NftTable(tuple(sorted(sets.values(), key=lambda s: s.name)), tuple(chains))
    return HostFirewall(node, interface, table, guard, exempt if guard else ())


def compile_inventory(inventory: Inventory) -> dict[NodeName, HostFirewall | None]:
    """Every node's wanted table (None: no table wanted; every node when there is no policy)."""
    resolved = resolve(inventory)
    if resolved is None:
        return {node.name: None for node in inventory.nodes}
    fams = families(inventory)
    interface = inventory.mesh.interface
    return {n.name: compile_host(resolved, n.name, interface, fams) for n in inventory.nodes}


def ssh_guard_conflict(resolved: ResolvedPolicy, node: Node) -> str | None:
    """Why ``node``'s guard would drop the port wiremesh logs in on (from the inventory's ``ssh``,
    else 22; a port set only in an OpenSSH config is not seen here), or None."""
    port = node.ssh.port if node.ssh is not None and node.ssh.port is not None else 22
    for spec in guard_ports(resolved, node.name):
        if spec.proto is Proto.TCP and spec.low <= port <= spec.high:
            return f"the guard would drop {spec}, which covers its SSH port {port}"
    return None


def guard_ssh_conflicts(inventory: Inventory) -> list[ValidationError]:
    """Hosts whose guard would drop the port wiremesh logs in on (:func:`ssh_guard_conflict`).
    ``apply`` refuses these unless forced, and then relies on commit-confirmed to get the host
    back."""
    resolved = resolve(inventory)
    if resolved is None:
        return []
    problems = []
    for node in inventory.nodes:
        why = ssh_guard_conflict(resolved, node)
        if why is not None:
            problems.append(
                ValidationError(
                    f"node {node.name!r}: {why}",
                    "remove overlay_only from the rule that covers the SSH port; with --force "
                    "the host undoes the change by itself when apply cannot log in again",
                )
            )
    return problems


def guard_drops(firewall: HostFirewall | None, interface: str, probe: Probe) -> bool:
    """Whether the guard of ``firewall`` drops ``probe`` arriving on ``interface`` (the guard's
    meaning, which its compiled chain must implement)."""
    if firewall is None or interface in (firewall.interface, *ALWAYS_EXEMPT, *firewall.exempt):
        return False
    return any(spec.matches(probe) for spec in firewall.guard)


def sorted_elements(elements: frozenset[Element]) -> list[Element]:
    """Elements in a stable order (family, address, size)."""
    return sorted(elements, key=element_key)
