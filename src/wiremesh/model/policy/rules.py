"""The ``[policy]`` of an inventory as values: rules, tests, and the policy's switches.

A *reference* (``from``/``to`` of a rule or test) names a group (``groups = [...]`` on nodes, or one
derived from ``k3s_role``), a node (a group of one), or ``"*"`` (every node). Rules are evaluated in
order and the first rule that covers a connection decides; after the user's rules come the rules of the
presets, then the built-in ping rule, then the default (:mod:`wiremesh.model.policy.evaluate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wiremesh.model.policy.ports import PortSpec, Probe

EVERYONE = "*"
"""The reference that means every node of the mesh."""


class Action(StrEnum):
    """What a rule does with the connections it covers, and what the default does with the rest."""

    ALLOW = "allow"
    DENY = "deny"


def refs_text(refs: tuple[str, ...]) -> str:
    """References for people: ``app``, ``app, web``."""
    return ", ".join(refs)


@dataclass(frozen=True)
class Rule:
    """One rule: connections from ``sources`` to ``targets`` on ``ports`` are allowed (or denied).

    ``origin`` says where the rule comes from, for reports: ``rule 2`` (the second of the user's
    rules), ``k3s preset (kubelet)``, ``built-in ping rule``. ``overlay_only`` marks ports that must be
    reachable only over the mesh: the guard (opt-in) drops them on every other interface.
    """

    sources: tuple[str, ...]
    targets: tuple[str, ...]
    ports: tuple[PortSpec, ...]
    action: Action = Action.ALLOW
    overlay_only: bool = False
    origin: str = "rule"

    def covers(self, probe: Probe) -> bool:
        """Whether one of the rule's port specs covers ``probe``."""
        return any(spec.matches(probe) for spec in self.ports)

    def summary(self) -> str:
        """``from app to db ports tcp/5432`` (``deny from ...`` for a deny rule)."""
        verb = "deny " if self.action is Action.DENY else ""
        ports = ", ".join(str(p) for p in self.ports)
        return f"{verb}from {refs_text(self.sources)} to {refs_text(self.targets)} ports {ports}"

    def describe(self) -> str:
        """``rule 2 (from app to db ports tcp/5432)``."""
        return f"{self.origin} ({self.summary()})"


@dataclass(frozen=True)
class PolicyTest:
    """One assertion: a connection from ``source`` to ``target`` on ``probe`` is ``expect``-ed.

    Source and target are references; a test of groups holds for every pair of distinct nodes.
    ``index`` is the test's place in the file, from 1.
    """

    index: int
    source: str
    target: str
    probe: Probe
    expect: Action

    def describe(self) -> str:
        """``test 3 (app-1 → db-1 tcp/5432)``."""
        return f"test {self.index} ({self.source} → {self.target} {self.probe})"


@dataclass(frozen=True)
class Policy:
    """The ``[policy]`` table.

    ``default`` decides what no rule covers: ``allow`` is today's open mesh, ``deny`` lets through only
    what rules allow (plus replies, and pings while ``ping`` is on). ``guard`` (opt-in) drops the
    overlay-only ports on every interface but the mesh interface, loopback, ``guard_exempt`` and the
    presets' own interfaces.
    """

    default: Action = Action.ALLOW
    rules: tuple[Rule, ...] = ()
    tests: tuple[PolicyTest, ...] = ()
    presets: tuple[str, ...] = ()
    ping: bool = True
    guard: bool = False
    guard_exempt: tuple[str, ...] = ()
