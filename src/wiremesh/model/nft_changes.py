"""Firewall change records: one printable difference in our nftables table on one host (pure).

They have the shape of :mod:`wiremesh.model.changes` (they are :class:`Change` subclasses:
``describe()`` for people, ``kind`` for scripts) so that they fold into host plans, and describe the
change without the host's name ("set app: add 10.0.0.7"): the plan prints the host in front.
:mod:`wiremesh.model.nft_diff` makes them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wiremesh.model.changes import Change
from wiremesh.model.nft import Element, NftRule, element_key, element_text, set_ref


def port_text(rule: NftRule) -> str:
    """The ports a rule matches, as a port spec: ``tcp/5432``, ``icmp``, ``any``."""
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
        text = f"{verb} {label} → {port_text(rule)}{v6}"
    elif rule.proto is None and not rule.iifnames:
        text = f"{verb} everything else"
    else:
        text = f"{verb} {port_text(rule)}"
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
        return f"{describe_rule(self.rule)} (not in the policy, hand-edited?): remove"


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
