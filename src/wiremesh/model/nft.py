"""nftables rulesets in the normal form wiremesh compiles, reads back and compares (pure).

wiremesh owns one table, ``table inet wiremesh`` (the ``inet`` family sees IPv4 and IPv6, nft(8)
"ADDRESS FAMILIES"), with:

- named sets of source networks per group and address family (``g_<group>_v4``, ``g_<group>_v6``;
  ``all_v4``/``all_v6`` for ``*``), so that a node joining a group changes set elements, not rules;
- chain ``input`` (base chain, hook input, policy accept): sends what arrives on the mesh interface
  to chain ``mesh`` and lets everything else go on to the other tables;
- chain ``mesh``: established/related accepted, then the rules, then the default;
- chain ``guard`` (base chain, only with the guard on): drops the overlay-only ports on every
  interface but the mesh interface, ``lo`` and the exempt ones.

Wanted tables (:class:`HostFirewall`, compiled from the policy) and observed ones
(:class:`ObservedTable`, read from ``nft -j list table``) are different types; both reduce to
:class:`NftTable`, the comparable core.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wiremesh.model.addressing import IPAddress, IPNetwork
from wiremesh.model.names import NodeName
from wiremesh.model.policy.ports import PortSpec

FAMILY = "inet"
TABLE = "wiremesh"
INPUT = "input"
MESH = "mesh"
GUARD = "guard"
EVERYONE_SET = "all"


@dataclass(frozen=True)
class AddrRange:
    """A range of addresses as an interval set element (``10.0.0.1-10.0.0.5``). wiremesh never
    writes one (it writes addresses and prefixes); one read back was added by hand."""

    first: IPAddress
    last: IPAddress

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"

    def __contains__(self, address: IPAddress) -> bool:
        return address.version == self.first.version and int(self.first) <= int(address) <= int(
            self.last
        )

    @property
    def version(self) -> int:
        """4 or 6."""
        return self.first.version


Element = IPNetwork | AddrRange


def element_text(element: Element) -> str:
    """How nft writes an element: a bare address for a /32 or /128, else a prefix or a range."""
    if isinstance(element, AddrRange):
        return str(element)
    if element.prefixlen == element.max_prefixlen:
        return str(element.network_address)
    return str(element)


def element_key(element: Element) -> tuple[int, int, int]:
    """A sort key: family, first address, size."""
    if isinstance(element, AddrRange):
        return (element.version, int(element.first), int(element.last) - int(element.first) + 1)
    return (element.version, int(element.network_address), element.num_addresses)


def element_contains(element: Element, address: IPAddress) -> bool:
    """Whether ``address`` is in ``element``."""
    if isinstance(element, AddrRange):
        return address in element
    return address.version == element.version and address in element


def set_name(ref: str, family: int) -> str:
    """The set holding ``ref``'s source networks of one family: ``g_app_v4``, ``all_v6`` (for ``*``).

    The ``g_`` prefix keeps names valid nft identifiers (a group may start with a digit) and apart
    from ``all``; groups are lowercase labels, so no two references share a set name.
    """
    return f"{EVERYONE_SET}_v{family}" if ref == "*" else f"g_{ref}_v{family}"


def set_ref(name: str) -> tuple[str, int] | None:
    """The reference and family of a set named by :func:`set_name`, or None."""
    if name.endswith(("_v4", "_v6")):
        family = int(name[-1])
        stem = name[:-3]
        if stem == EVERYONE_SET:
            return "*", family
        if stem.startswith("g_") and len(stem) > 2:
            return stem[2:], family
    return None


@dataclass(frozen=True)
class NftSet:
    """A named set of IPv4 or IPv6 networks (``flags interval``: prefixes need it)."""

    name: str
    family: int  # 4: type ipv4_addr; 6: type ipv6_addr
    elements: frozenset[Element] = frozenset()

    @property
    def label(self) -> str:
        """The reference the set stands for (``app``, ``*``), else its name."""
        ref = set_ref(self.name)
        return ref[0] if ref else self.name


@dataclass(frozen=True)
class NftRule:
    """One rule of the subset wiremesh writes: a conjunction of optional matches and a verdict.

    ``iifnames``: ``iifname`` in these names; ``ct_states``: ``ct state`` in these; ``saddr_set``:
    ``ip saddr @set`` (``family`` 4) or ``ip6 saddr @set`` (6); ``proto`` with ``dports``: ``tcp
    dport 5432`` or ``udp dport 2379-2380``; ``proto`` icmp/icmpv6 with ``icmp_type``: ``icmp type
    echo-request``. ``verdict``: accept, drop, return, or jump to ``target``.
    """

    iifnames: frozenset[str] = frozenset()
    ct_states: frozenset[str] = frozenset()
    family: int | None = None
    saddr_set: str | None = None
    proto: str | None = None
    dports: tuple[int, int] | None = None
    icmp_type: str | None = None
    counter: bool = False
    verdict: str = "accept"
    target: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class BaseHook:
    """What makes a chain a base chain (nft(8) "CHAINS"): type, hook, priority, policy."""

    hook: str = "input"
    priority: int = 0  # "priority filter"
    policy: str = "accept"  # never drop what our rules do not cover: other tables decide it
    type: str = "filter"


@dataclass(frozen=True)
class NftChain:
    """A chain: a base chain (``base`` set) or a regular one reached by ``jump``."""

    name: str
    base: BaseHook | None
    rules: tuple[NftRule, ...] = ()


@dataclass(frozen=True)
class NftTable:
    """Our table's content in normal form: sets sorted by name, chains in order."""

    sets: tuple[NftSet, ...]
    chains: tuple[NftChain, ...]

    def get_set(self, name: str) -> NftSet | None:
        """The set called ``name``, or None."""
        return next((s for s in self.sets if s.name == name), None)

    def chain(self, name: str) -> NftChain | None:
        """The chain called ``name``, or None."""
        return next((c for c in self.chains if c.name == name), None)

    @property
    def rule_count(self) -> int:
        """How many rules the table holds."""
        return sum(len(c.rules) for c in self.chains)

    @property
    def element_count(self) -> int:
        """How many set elements the table holds."""
        return sum(len(s.elements) for s in self.sets)


@dataclass(frozen=True)
class HostFirewall:
    """The wanted table of one host, and what it was made from (for reports)."""

    node: NodeName
    interface: str
    table: NftTable
    guard: tuple[PortSpec, ...] = ()
    """The overlay-only ports the guard drops on other interfaces (empty: no guard chain)."""
    exempt: tuple[str, ...] = ()
    """Interfaces the guard leaves alone, besides the mesh interface and lo."""


@dataclass(frozen=True)
class ObservedRule:
    """A rule as read from a host. ``rule`` is None when it is not of a form wiremesh writes."""

    rule: NftRule | None
    text: str  # nft-like text, for reports
    handle: int | None = None
    packets: int | None = None  # counter values, when the rule counts
    bytes: int | None = None


@dataclass(frozen=True)
class ObservedChain:
    """A chain as read from a host."""

    name: str
    base: BaseHook | None
    rules: tuple[ObservedRule, ...] = ()


@dataclass(frozen=True)
class ObservedSet:
    """A set as read from a host; ``family`` is None when it is not an address set like ours."""

    name: str
    family: int | None
    interval: bool
    elements: frozenset[Element] = frozenset()
    detail: str = ""  # type and flags as nft gives them, for reports


@dataclass(frozen=True)
class ObservedTable:
    """Our table as read from a host (``nft -j list table inet wiremesh``)."""

    sets: tuple[ObservedSet, ...] = ()
    chains: tuple[ObservedChain, ...] = ()
    others: tuple[str, ...] = field(default=())
    """Objects of kinds wiremesh never writes (maps, counters, flowtables...), described."""

    def normal(self) -> NftTable | None:
        """The comparable core, or None when anything in the table is not of a form we write."""
        if self.others:
            return None
        sets = []
        for s in self.sets:
            if s.family is None or not s.interval:
                return None
            sets.append(NftSet(s.name, s.family, s.elements))
        chains = []
        for c in self.chains:
            rules = [r.rule for r in c.rules]
            if any(r is None for r in rules):
                return None
            chains.append(NftChain(c.name, c.base, tuple(r for r in rules if r is not None)))
        return NftTable(tuple(sorted(sets, key=lambda s: s.name)), tuple(chains))
