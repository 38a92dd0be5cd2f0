"""What differs between a host's wanted table and the one it has (pure), as the change records of
:mod:`wiremesh.model.nft_changes`.

An empty diff means the host's table is exactly the compiled one: same sets with the same elements,
same chains, same rules in the same order (counter values and handles aside). When only set
elements differ, :func:`wiremesh.codec.nftables.transaction` changes just those elements; anything
else replaces the whole table in one transaction.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from wiremesh.model.changes import Change
from wiremesh.model.nft import (
    GUARD,
    HostFirewall,
    NftChain,
    NftRule,
    ObservedChain,
    ObservedTable,
    element_key,
)
from wiremesh.model.nft_changes import (
    AddElements,
    AddSet,
    ChangedChain,
    ChangedSet,
    CreateTable,
    ExtraRule,
    FirewallChange,
    GuardChange,
    MissingChain,
    MissingRule,
    RemoveElements,
    RemoveTable,
    RulesOutOfOrder,
    UnknownChain,
    UnknownObject,
    UnknownRule,
    UnknownSet,
    port_text,
)


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
            drops.append(port_text(rule))
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
