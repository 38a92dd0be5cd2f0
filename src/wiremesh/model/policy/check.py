"""Cross-checks of a policy against its inventory (single values were validated when parsed).

Each problem names the rule or test (by its place in the file, from 1) and the key, and says how to
fix it: unknown groups or nodes (with a did-you-mean), groups that shadow node names or the groups
derived from ``k3s_role``, unknown presets, tests that name no pair of nodes, a guard without
overlay-only ports.
"""

from __future__ import annotations

import difflib
from collections import Counter

from wiremesh.errors import ValidationError
from wiremesh.model.inventory import Inventory
from wiremesh.model.policy.ports import Proto
from wiremesh.model.policy.presets import DERIVED_GROUPS, PRESETS
from wiremesh.model.policy.resolve import references
from wiremesh.model.policy.rules import Policy

_REF_HINT = (
    "name a group (from 'groups = [...]' on nodes), a node, \"*\" (every node), or a group derived "
    f"from k3s_role: {', '.join(DERIVED_GROUPS)}"
)


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_groups(inventory: Inventory) -> list[ValidationError]:
    """Problems with the nodes' ``groups``: duplicates, shadowed node names, reserved names."""
    problems = []
    names = set(inventory.names())
    for node in inventory.nodes:
        where = f"node {node.name!r}: groups"
        for group, count in Counter(node.groups).items():
            if count > 1:
                problems.append(
                    ValidationError(f"{where}: {group!r} is listed {count} times", "list it once")
                )
            if group in DERIVED_GROUPS:
                problems.append(
                    ValidationError(
                        f"{where}: {group!r} is derived from k3s_role and cannot be set by hand",
                        'set k3s_role = "server" or "agent" on the node instead',
                    )
                )
            elif group in names:
                problems.append(
                    ValidationError(
                        f"{where}: group {group!r} has the same name as node {group!r}",
                        "a node is already a group of one under its own name: rename the group",
                    )
                )
    if inventory.policy is not None:
        for node in inventory.nodes:
            if node.name in DERIVED_GROUPS:
                problems.append(
                    ValidationError(
                        f"node {node.name!r}: the name is reserved for a group derived from "
                        "k3s_role",
                        "rename the node: a policy could not tell the node from the group",
                    )
                )
    return problems


def check_policy(inventory: Inventory) -> list[ValidationError]:
    """Every consistency problem of the inventory's groups and policy (empty when valid)."""
    problems = check_groups(inventory)
    policy = inventory.policy
    if policy is None:
        return problems
    known = references(inventory.nodes)
    choices = sorted(known)

    def refs(where: str, key: str, values: tuple[str, ...]) -> None:
        for ref in values:
            if ref not in known:
                problems.append(
                    ValidationError(
                        f"[policy] {where}: {key}: no group or node named {ref!r}"
                        f"{_did_you_mean(ref, choices)}",
                        _REF_HINT,
                    )
                )

    for index, rule in enumerate(policy.rules, 1):
        refs(f"rule {index}", "from", rule.sources)
        refs(f"rule {index}", "to", rule.targets)
    for test in policy.tests:
        where = f"test {test.index}"
        refs(where, "from", (test.source,))
        refs(where, "to", (test.target,))
        if test.source in known and test.target in known:
            sources, targets = known[test.source], known[test.target]
            if not any(s != t for s in sources for t in targets):
                problems.append(
                    ValidationError(
                        f"[policy] {where}: from {test.source!r} to {test.target!r} names no pair "
                        "of distinct nodes",
                        "a node's traffic to itself never crosses the mesh: test between two nodes",
                    )
                )
    problems += _check_presets(inventory, policy)
    problems += _check_guard(policy)
    return problems


def _check_presets(inventory: Inventory, policy: Policy) -> list[ValidationError]:
    problems = []
    for name, count in Counter(policy.presets).items():
        if name not in PRESETS:
            problems.append(
                ValidationError(
                    f"[policy] presets: unknown preset {name!r}{_did_you_mean(name, list(PRESETS))}",
                    f"known presets are: {', '.join(PRESETS)}",
                )
            )
        elif count > 1:
            problems.append(
                ValidationError(f"[policy] presets: {name!r} is listed twice", "list it once")
            )
    if "k3s" in policy.presets and not any(n.k3s_role for n in inventory.nodes):
        problems.append(
            ValidationError(
                "[policy] presets: 'k3s' is listed but no node has a k3s_role",
                'set k3s_role = "server" or "agent" on the k3s nodes (docs/k3s.md)',
            )
        )
    return problems


def _check_guard(policy: Policy) -> list[ValidationError]:
    problems = []
    for index, rule in enumerate(policy.rules, 1):
        if rule.overlay_only and any(p.proto is Proto.ANY for p in rule.ports):
            problems.append(
                ValidationError(
                    f'[policy] rule {index}: overlay_only with ports "any" would make the guard '
                    "drop everything on every other interface (SSH too)",
                    'list the ports that must stay on the mesh, e.g. ports = ["tcp/5432"]',
                )
            )
    if not policy.guard or problems:
        return problems
    marked = any(r.overlay_only for r in policy.rules) or any(
        r.overlay_only for name in policy.presets if name in PRESETS for r in PRESETS[name].rules
    )
    if marked:
        return []
    return [
        ValidationError(
            "[policy] guard = true, but no rule marks ports as overlay_only",
            "add overlay_only = true to the rules whose ports must be reachable only over the "
            'mesh, or use a preset that marks them (presets = ["k3s"])',
        )
    ]
