"""The evaluator: for a connection from one node to another, allow or deny, and which rule decided.

Semantics (the compiled nftables ruleset implements exactly these; a property test checks it):

1. Replies and related traffic of allowed connections always pass (conntrack "established" and
   "related"); a policy decides only about new connections and pings.
2. Rules are tried in order: the user's rules, then the presets', then the built-in ping rule. The
   first rule whose ``from`` holds the source node, whose ``to`` holds the destination node and
   whose ports cover the probe decides, with its action.
3. When none does, the default decides.
"""

from __future__ import annotations

from dataclasses import dataclass

from wiremesh.model.names import NodeName
from wiremesh.model.policy.ports import Probe
from wiremesh.model.policy.resolve import ResolvedPolicy
from wiremesh.model.policy.rules import Action, PolicyTest, Rule

_VERB = {Action.ALLOW: "allows", Action.DENY: "denies"}


@dataclass(frozen=True)
class Decision:
    """The outcome for one connection: the action, and the rule that decided (None: the default)."""

    action: Action
    rule: Rule | None

    @property
    def allowed(self) -> bool:
        """True when the connection may be made."""
        return self.action is Action.ALLOW

    @property
    def decided_by(self) -> str:
        """``rule 2`` or ``default``: stable, for scripts."""
        return self.rule.origin if self.rule is not None else "default"

    def describe(self) -> str:
        """``rule 2 (from app to db ports tcp/5432) allows it`` or ``the default deny decided``."""
        if self.rule is None:
            return f"the default {self.action} decided"
        return f"{self.rule.describe()} {_VERB[self.action]} it"


def decide(resolved: ResolvedPolicy, source: str, target: str, probe: Probe) -> Decision:
    """Whether ``source`` may connect to ``target`` with ``probe``, and which rule decided."""
    for item in resolved.rules:
        if source in item.sources and target in item.targets and item.rule.covers(probe):
            return Decision(item.rule.action, item.rule)
    return Decision(resolved.policy.default, None)


def near_misses(resolved: ResolvedPolicy, source: str, target: str, probe: Probe) -> list[Rule]:
    """The rules that hold ``source`` and ``target`` but not ``probe``'s port: what a user most
    likely meant when a test fails on the default."""
    return [
        item.rule
        for item in resolved.rules
        if source in item.sources and target in item.targets and not item.rule.covers(probe)
    ]


@dataclass(frozen=True)
class PairOutcome:
    """A test's outcome for one pair of nodes."""

    source: NodeName
    target: NodeName
    decision: Decision
    near: tuple[Rule, ...] = ()


@dataclass(frozen=True)
class TestOutcome:
    """A policy test and the pairs of nodes for which it failed (none: it passed)."""

    test: PolicyTest
    pairs: int
    failures: tuple[PairOutcome, ...]

    __test__ = False  # not a pytest test class

    @property
    def passed(self) -> bool:
        """True when every pair got what the test expects (and there was at least one pair)."""
        return self.pairs > 0 and not self.failures

    def describe(self) -> str:
        """``test 3 (app-1 → db-1 tcp/5432) expects allow, but the default deny decided``."""
        head = f"{self.test.describe()} expects {self.test.expect}"
        if self.pairs == 0:
            return f"{head}, but it names no pair of distinct nodes"
        if not self.failures:
            return f"{head}: passes"
        reasons: dict[str, list[str]] = {}
        for failure in self.failures:
            why = failure.decision.describe()
            if failure.decision.rule is None and failure.near:
                why = f"{failure.near[0].describe()} does not cover {self.test.probe}, and {why}"
            reasons.setdefault(why, []).append(f"{failure.source} → {failure.target}")
        if self.pairs == 1:
            return f"{head}, but {next(iter(reasons))}"
        parts = []
        for why, pairs in reasons.items():
            shown = ", ".join(pairs[:3]) + (f" and {len(pairs) - 3} more" if len(pairs) > 3 else "")
            parts.append(f"for {shown} {why}")
        return f"{head}, but {'; '.join(parts)}"


def run_test(resolved: ResolvedPolicy, test: PolicyTest) -> TestOutcome:
    """Evaluate one test for every pair of distinct nodes it names."""
    sources = sorted(resolved.of(test.source))
    targets = sorted(resolved.of(test.target))
    failures = []
    pairs = 0
    for source in sources:
        for target in targets:
            if source == target:
                continue  # a host's traffic to itself never crosses the mesh
            pairs += 1
            decision = decide(resolved, source, target, test.probe)
            if decision.action is not test.expect:
                near = tuple(near_misses(resolved, source, target, test.probe))
                failures.append(PairOutcome(source, target, decision, near))
    return TestOutcome(test, pairs, tuple(failures))


def run_tests(resolved: ResolvedPolicy) -> list[TestOutcome]:
    """Every test of the policy, in file order."""
    return [run_test(resolved, t) for t in resolved.policy.tests]


def failing(resolved: ResolvedPolicy) -> list[TestOutcome]:
    """The tests that fail: ``plan`` refuses to apply a policy while this is not empty."""
    return [o for o in run_tests(resolved) if not o.passed]
