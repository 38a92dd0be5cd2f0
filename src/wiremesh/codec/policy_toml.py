"""The ``[policy]`` table of ``wiremesh.toml`` and the nodes' ``groups``, read and validated here.

Format (docs/policy.md)::

    [[node]]
    name = "db-1"
    groups = ["db"]

    [policy]
    default = "deny"            # "allow" (the default: nothing installed) or "deny"
    presets = ["k3s"]           # rules for common stacks, after yours
    ping = true                 # every node may ping every node (the default)
    guard = true                # opt-in: overlay-only ports dropped on other interfaces
    guard_exempt = ["docker0"]  # interfaces the guard leaves alone (besides the mesh, lo)
    rules = [
      { from = "app", to = "db", ports = "tcp/5432" },
      { from = "*", to = "db", ports = ["tcp/22"], action = "deny" },
    ]
    tests = [
      { from = "app-1", to = "db-1", port = "tcp/5432", expect = "allow" },
    ]

``rules`` and ``tests`` may as well be written as ``[[policy.rules]]``/``[[policy.tests]]`` tables:
TOML makes both the same array of tables. Cross-checks against the nodes (unknown groups...) are in
:mod:`wiremesh.model.policy.check`.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any, TypeVar

from wiremesh.errors import ValidationError
from wiremesh.model.names import check_label, interface_name
from wiremesh.model.policy.ports import Probe, parse_port_specs
from wiremesh.model.policy.rules import EVERYONE, Action, Policy, PolicyTest, Rule

POLICY_KEYS = ("default", "presets", "ping", "guard", "guard_exempt", "rules", "tests")
RULE_KEYS = ("from", "to", "ports", "action", "overlay_only")
TEST_KEYS = ("from", "to", "port", "expect")

T = TypeVar("T")


def _unknown(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> list[ValidationError]:
    out = []
    for key in table:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
            mean = f" (did you mean {close[0]!r}?)" if close else ""
            out.append(
                ValidationError(
                    f"{where}: unknown key {key!r}{mean}", f"known keys are: {', '.join(allowed)}"
                )
            )
    return out


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(
            f"{what} must be true or false, not {value!r}", "write true or false, without quotes"
        )
    return value


def _action(value: object, what: str) -> Action:
    if value not in ("allow", "deny"):
        raise ValidationError(f"{what} {value!r} is not allow or deny", 'write "allow" or "deny"')
    return Action(str(value))


def _ref(value: object, what: str) -> str:
    if value == EVERYONE:
        return EVERYONE
    return check_label(value, what)


def _refs(value: object, what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise ValidationError(
            f'{what} must be a group, a node or "*", or a list of them',
            'e.g. from = "app" or from = ["app", "web"]',
        )
    return tuple(_ref(item, what) for item in items)


def _labels(value: object, what: str, check: Callable[[object, str], str]) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValidationError(f"{what} must be a list", 'write it in brackets, e.g. ["db", "k3s"]')
    return tuple(check(item, what) for item in value)


def parse_groups(value: object, what: str) -> tuple[str, ...]:
    """A node's ``groups``: a list of lowercase names (``"*"`` is every node already)."""
    if isinstance(value, list) and EVERYONE in value:
        raise ValidationError(f'{what}: "*" already means every node', 'remove "*" from the list')
    return _labels(value, what, check_label)


def _get(
    table: dict[str, Any],
    key: str,
    parse: Callable[[object, str], T],
    where: str,
    problems: list[ValidationError],
) -> T | None:
    if key not in table:
        return None
    try:
        return parse(table[key], f"{where}: {key}")
    except ValidationError as exc:
        problems.append(exc)
        return None


def _tables(value: object, what: str, example: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValidationError(f"{what} must be a list of tables", f"e.g. {example}")
    return value


def _rule_tables(value: object, what: str) -> list[dict[str, Any]]:
    return _tables(value, what, '[{ from = "app", to = "db", ports = "tcp/5432" }]')


def _test_tables(value: object, what: str) -> list[dict[str, Any]]:
    return _tables(
        value, what, '[{ from = "app-1", to = "db-1", port = "tcp/5432", expect = "allow" }]'
    )


def _rule(table: dict[str, Any], index: int, problems: list[ValidationError]) -> Rule | None:
    where = f"[policy] rule {index}"
    before = len(problems)
    problems += _unknown(table, RULE_KEYS, where)
    for key in ("from", "to", "ports"):
        if key not in table:
            problems.append(
                ValidationError(f"{where}: '{key}' is missing", "a rule has from, to and ports")
            )
    sources = _get(table, "from", _refs, where, problems)
    targets = _get(table, "to", _refs, where, problems)
    ports = _get(table, "ports", parse_port_specs, where, problems)
    action = _get(table, "action", _action, where, problems) or Action.ALLOW
    overlay_only = _get(table, "overlay_only", _bool, where, problems) or False
    if len(problems) > before or sources is None or targets is None or ports is None:
        return None
    return Rule(sources, targets, ports, action, overlay_only, origin=f"rule {index}")


def _test(table: dict[str, Any], index: int, problems: list[ValidationError]) -> PolicyTest | None:
    where = f"[policy] test {index}"
    before = len(problems)
    problems += _unknown(table, TEST_KEYS, where)
    for key in TEST_KEYS:
        if key not in table:
            problems.append(
                ValidationError(
                    f"{where}: '{key}' is missing", "a test has from, to, port and expect"
                )
            )
    source = _get(table, "from", _ref, where, problems)
    target = _get(table, "to", _ref, where, problems)
    probe = _get(table, "port", Probe.parse, where, problems)
    expect = _get(table, "expect", _action, where, problems)
    if len(problems) > before or None in (source, target, probe, expect):
        return None
    assert source is not None and target is not None and probe is not None and expect is not None
    return PolicyTest(index, source, target, probe, expect)


def parse_policy(value: object, problems: list[ValidationError]) -> Policy | None:
    """The ``[policy]`` table (None when absent); problems are appended, one per bad value."""
    if value is None:
        return None
    if not isinstance(value, dict):
        problems.append(
            ValidationError("'policy' must be a table", "write it as [policy] with default = ...")
        )
        return None
    where = "[policy]"
    before = len(problems)
    problems += _unknown(value, POLICY_KEYS, where)
    default = _get(value, "default", _action, where, problems) or Action.ALLOW
    presets = _get(value, "presets", lambda v, w: _labels(v, w, check_label), where, problems)
    ping = _get(value, "ping", _bool, where, problems)
    guard = _get(value, "guard", _bool, where, problems) or False
    exempt = _get(
        value, "guard_exempt", lambda v, w: _labels(v, w, interface_name), where, problems
    )
    rules: list[Rule] = []
    for index, table in enumerate(_get(value, "rules", _rule_tables, where, problems) or [], 1):
        rule = _rule(table, index, problems)
        if rule is not None:
            rules.append(rule)
    tests: list[PolicyTest] = []
    for index, table in enumerate(_get(value, "tests", _test_tables, where, problems) or [], 1):
        test = _test(table, index, problems)
        if test is not None:
            tests.append(test)
    if len(problems) > before:
        return None
    return Policy(
        default=default,
        rules=tuple(rules),
        tests=tuple(tests),
        presets=presets or (),
        ping=True if ping is None else ping,
        guard=guard,
        guard_exempt=exempt or (),
    )
