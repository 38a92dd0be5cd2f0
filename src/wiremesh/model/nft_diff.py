"""What differs between a host's wanted table and the one it has (pure): printable change records.

The records have the shape of :mod:`wiremesh.model.changes` (they are :class:`Change` subclasses:
``describe()`` for people, ``kind`` for scripts) so that they fold into host plans. They describe
the change without the host's name ("set app: add 10.0.0.7"); the plan prints the host in front.

An empty diff means the host's table is exactly the compiled one: same sets with the same elements,
same chains, same rules in the same order (counter values and handles aside). When only set
elements differ, :func:`wiremesh.codec.nftables.transaction` changes just those elements; anything
else replaces the whole table in one transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from wiremesh.model.changes import Change
from wiremesh.model.nft import (
    GUARD,
    Element,
    HostFirewall,
    NftChain,
    NftRule,
    ObservedChain,
    ObservedTable,
    element_key,
    element_text,
    set_ref,
)


def _port_text(rule: NftRule) -> str:
    if rule.dports is not None:
        low, high = rule.dports
        return f"{rule.proto}/{low}" if low == high else f"{rule.proto}/{low}-{high}"
    if rule.icmp_type == "echo-request":
        return "icmp"
    if rule.proto is not None:
        return f"{rule.proto}/any"
    return "any"


def describe_rule(rule: NftRule) -> str:
    """A rule for people: ``rule 2: allow app → tcp/5432``, ``allow replies (established, related)``."""
    verb = {"accept": "allow", "drop": "deny"}.get(rule.verdict, rule.verdict)
    if rule.verdict == "jump":
        text = f"traffic arriving on {', '.join(sorted(rule.iifnames))} goes to chain {rule.target}"
    elif rule.ct_states:
        text = f"{verb} replies ({', '.join(sorted(rule.ct_states))})"
    elif rule.verdict == "return" and rule.iifnames:
        text = f"leave traffic arriving on {', '.join(sorted(rule.iifnames))} alone"
    elif rule.saddr_set is not None:
        ref = set_ref(rule.saddr_set)
        label = ref[0] if ref else f"@{rule.saddr_set}"
        v6 = " over IPv6" if rule.family == 6 else ""
        text = f"{verb} {label} → {_port_text(rule)}{v6}"
    elif rule.proto is None and not rule.iifnames:
        text = f"{verb} everything else"
    else:
        text = f"{verb} {_port_text(rule)}"
    return f"{rule.comment}: {text}" if rule.comment else text


def _elements_text(elements: Sequence[Element]) -> str:
    return ", ".join(element_text(e) for e in sorted(elements, key=element_key))


@dataclass(frozen=True)
class FirewallChange(Change):
    """A difference in our nftables table on one host."""

    @property
    def element_only(self) -> bool:
        """True when changing set elements alone carries it out (no table replacement)."""
        return False

    @property
    def needs_confirm(self) -> bool:
        """True for changes that may cut off SSH: apply them commit-confirmed."""
        return False


@dataclass(frozen=True)
class CreateTable(FirewallChange):
    """Our table is absent: load it."""

    rules: int
    elements: int

    def describe(self) -> str:
        return f"create table inet wiremesh ({self.rules} rules, {self.elements} set elements)"


@dataclass(frozen=True)
class RemoveTable(FirewallChange):
    """Our table is there but no policy applies to the host any more."""

    def describe(self) -> str:
        return "remove table inet wiremesh (no policy applies to this host)"


@dataclass(frozen=True)
class AddElements(FirewallChange):
    """Networks to add to a set (a node joined a group, or got an address or subnet)."""

    set_name: str
    label: str
    elements: tuple[Element, ...]

    @property
    def element_only(self) -> bool:
        return True

    def describe(self) -> str:
        return f"set {self.label}: add {_elements_text(self.elements)}"


@dataclass(frozen=True)
class RemoveElements(FirewallChange):
    """Networks to take out of a set."""

    set_name: str
    label: str
    elements: tuple[Element, ...]

    @property
    def element_only(self) -> bool:
        return True

    def describe(self) -> str:
        return f"set {self.label}: remove {_elements_text(self.elements)}"


@dataclass(frozen=True)
class AddSet(FirewallChange):
    """A set the rules need is missing."""

    set_name: str
    label: str
    elements: int

    def describe(self) -> str:
        return f"add set {self.label} ({self.set_name}, {self.elements} elements)"


@dataclass(frozen=True)
class UnknownSet(FirewallChange):
    """A set in our table that the policy does not need (hand-made, or of an older policy)."""

    set_name: str
    detail: str

    def describe(self) -> str:
        ref = set_ref(self.set_name)
        if ref is not None:
            return f"set {ref[0]} ({self.set_name}) is not used by the policy: remove"
        return f"unknown set {self.set_name} in wiremesh table (hand-edited?): {self.detail}"


@dataclass(frozen=True)
class ChangedSet(FirewallChange):
    """A set of the right name whose type or flags differ."""

    set_name: str
    detail: str

    def describe(self) -> str:
        return f"set {self.set_name}: {self.detail} (expected an interval set of addresses)"


@dataclass(frozen=True)
class MissingRule(FirewallChange):
    """A compiled rule the host's table lacks."""

    chain: str
    rule: NftRule

    def describe(self) -> str:
        return f"{describe_rule(self.rule)} (missing)"


@dataclass(frozen=True)
class UnknownRule(FirewallChange):
    """A rule in our table that the policy does not make."""

    chain: str
    text: str

    def describe(self) -> str:
        return f"unknown rule in wiremesh table (hand-edited?): chain {self.chain}: {self.text}"


@dataclass(frozen=True)
class ExtraRule(FirewallChange):
    """A rule of the form wiremesh writes that the policy does not make (any more)."""

    chain: str
    rule: NftRule

    def describe(self) -> str:
        return f"{describe_rule(self.rule)} (not in the policy: remove)"


@dataclass(frozen=True)
class RulesOutOfOrder(FirewallChange):
    """The right rules in the wrong order (the first matching rule decides, so order matters)."""

    chain: str

    def describe(self) -> str:
        return f"chain {self.chain}: rules out of order"


@dataclass(frozen=True)
class MissingChain(FirewallChange):
    """A chain of ours is absent."""

    chain: str
    rules: int

    def describe(self) -> str:
        return f"chain {self.chain} is missing ({self.rules} rules)"


@dataclass(frozen=True)
class UnknownChain(FirewallChange):
    """A chain in our table that the policy does not make."""

    chain: str

    def describe(self) -> str:
        return f"unknown chain {self.chain} in wiremesh table (hand-edited?)"


@dataclass(frozen=True)
class ChangedChain(FirewallChange):
    """A chain whose hook, priority, policy or type differ."""

    chain: str
    detail: str

    def describe(self) -> str:
        return f"chain {self.chain}: {self.detail}"


@dataclass(frozen=True)
class UnknownObject(FirewallChange):
    """A map, counter, flowtable or other object in our table: wiremesh writes none."""

    text: str

    def describe(self) -> str:
        return f"unknown object in wiremesh table (hand-edited?): {self.text}"


@dataclass(frozen=True)
class GuardChange(FirewallChange):
    """The guard (overlay-only ports dropped on other interfaces) changes: ``before`` and ``after``
    summarise it (None: no guard). Applied commit-confirmed: a wrong guard can cut off SSH."""

    before: str | None
    after: str | None

    @property
    def needs_confirm(self) -> bool:
        return True

    def describe(self) -> str:
        if self.before is None:
            return f"guard: {self.after} (new)"
        if self.after is None:
            return f"guard: remove ({self.before})"
        return f"guard: {self.after} (was: {self.before})"


@dataclass(frozen=True)
class BootFileChange(FirewallChange):
    """The file the host loads our table from at boot differs from the compiled table."""

    path: str
    reason: str  # "new", "changed", "no policy applies to this host"

    def describe(self) -> str:
        if self.reason.startswith("no policy"):
            return f"remove {self.path} ({self.reason})"
        return f"write {self.path} ({self.reason})"


def guard_summary(rules: Sequence[NftRule | None]) -> str:
    """``drop tcp/6443, udp/8472 arriving on interfaces other than lo, wg0``."""
    keep: list[str] = []
    drops: list[str] = []
    unknown = 0
    for rule in rules:
        if rule is None:
            unknown += 1
        elif rule.verdict == "return" and rule.iifnames:
            keep.extend(sorted(rule.iifnames))
        elif rule.verdict == "drop":
            drops.append(_port_text(rule))
        else:
            unknown += 1
    text = f"drop {', '.join(drops) or 'nothing'}"
    text += (
        f" arriving on interfaces other than {', '.join(keep)}" if keep else " on every interface"
    )
    if unknown:
        text += f" (and {unknown} rule(s) wiremesh did not write)"
    return text


def _guard_rules(chain: NftChain | ObservedChain | None) -> list[NftRule | None] | None:
    if chain is None:
        return None
    if isinstance(chain, NftChain):
        return list(chain.rules)
    return [r.rule for r in chain.rules]


def _rules_diff(chain: str, wanted: tuple[NftRule, ...], observed: ObservedChain) -> list[Change]:
    known = [r.rule for r in observed.rules if r.rule is not None]
    if len(known) == len(observed.rules) and tuple(known) == wanted:
        return []
    available = Counter(wanted)
    out: list[Change] = []
    for item in observed.rules:
        if item.rule is None:
            out.append(UnknownRule(chain, item.text))
        elif available[item.rule] > 0:
            available[item.rule] -= 1
        else:
            out.append(ExtraRule(chain, item.rule))
    present = Counter(known)
    for rule in wanted:
        if present[rule] > 0:
            present[rule] -= 1
        else:
            out.append(MissingRule(chain, rule))
    return out or [RulesOutOfOrder(chain)]


def _chain_detail(wanted: NftChain, observed: ObservedChain) -> str | None:
    if wanted.base == observed.base:
        return None
    if observed.base is None:
        return "is a regular chain, expected a base chain"
    if wanted.base is None:
        return f"is a base chain (hook {observed.base.hook}), expected a regular chain"
    w, o = wanted.base, observed.base
    return (
        f"type {o.type} hook {o.hook} priority {o.priority} policy {o.policy}, expected "
        f"type {w.type} hook {w.hook} priority {w.priority} policy {w.policy}"
    )


def diff(wanted: HostFirewall | None, observed: ObservedTable | None) -> list[Change]:
    """The changes that make the host's table (``observed``, None: absent) the ``wanted`` one
    (None: no table); empty when they are the same."""
    if wanted is None:
        return [RemoveTable()] if observed is not None else []
    guard_wanted = wanted.table.chain(GUARD)
    if observed is None:
        out: list[Change] = [CreateTable(wanted.table.rule_count, wanted.table.element_count)]
        if guard_wanted is not None:
            out.append(GuardChange(None, guard_summary(guard_wanted.rules)))
        return out
    out = []
    observed_sets = {s.name: s for s in observed.sets}
    for want in wanted.table.sets:
        have = observed_sets.pop(want.name, None)
        if have is None:
            out.append(AddSet(want.name, want.label, len(want.elements)))
        elif have.family != want.family or not have.interval:
            out.append(ChangedSet(want.name, have.detail))
        else:
            gone = tuple(sorted(have.elements - want.elements, key=element_key))
            new = tuple(sorted(want.elements - have.elements, key=element_key))
            if gone:
                out.append(RemoveElements(want.name, want.label, gone))
            if new:
                out.append(AddElements(want.name, want.label, new))
    out += [UnknownSet(s.name, s.detail) for s in observed_sets.values()]
    out += [UnknownObject(text) for text in observed.others]
    observed_chains = {c.name: c for c in observed.chains}
    for want_chain in wanted.table.chains:
        if want_chain.name == GUARD:
            continue
        have_chain = observed_chains.pop(want_chain.name, None)
        if have_chain is None:
            out.append(MissingChain(want_chain.name, len(want_chain.rules)))
            continue
        detail = _chain_detail(want_chain, have_chain)
        if detail is not None:
            out.append(ChangedChain(want_chain.name, detail))
        out += _rules_diff(want_chain.name, want_chain.rules, have_chain)
    guard_observed = observed_chains.pop(GUARD, None)
    before, after = _guard_rules(guard_observed), _guard_rules(guard_wanted)
    same_base = (guard_observed.base if guard_observed else None) == (
        guard_wanted.base if guard_wanted else None
    )
    if before != after or not same_base:
        out.append(
            GuardChange(
                guard_summary(before) if before is not None else None,
                guard_summary(after) if after is not None else None,
            )
        )
    out += [UnknownChain(name) for name in observed_chains]
    return out


def element_only(changes: Sequence[Change]) -> bool:
    """True when every change is a set element change (then no rule is touched)."""
    return bool(changes) and all(isinstance(c, FirewallChange) and c.element_only for c in changes)


def needs_confirm(changes: Sequence[Change]) -> bool:
    """True when the changes include a guard change: load them commit-confirmed."""
    return any(isinstance(c, FirewallChange) and c.needs_confirm for c in changes)
