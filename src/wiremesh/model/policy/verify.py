"""``policy verify`` (pure parts): which probes to send, and how an observation compares with the
policy. The probes themselves run on the hosts (:func:`wiremesh.remote.nft.probe`).

Cases come from the policy tests (every pair of nodes they name) and one sample per rule and port
(the first node of ``from`` toward the first other node of ``to``, at the lowest port), for each
address family the destination has. The expectation is always the evaluator's decision.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wiremesh.model.addressing import IPAddress
from wiremesh.model.names import NodeName
from wiremesh.model.policy.evaluate import Decision, decide
from wiremesh.model.policy.ports import Probe, Proto
from wiremesh.model.policy.resolve import ResolvedPolicy


class Observed(StrEnum):
    """What a probe saw."""

    ALLOWED = "allowed"  # TCP connected or refused (a reset), or a ping answered
    DENIED = "denied"  # no answer within the timeout
    NOT_PROBED = "not probed"  # UDP (nothing answers without a listener), or no bash on the host
    ERROR = "error"  # unreachable, or another error: says nothing about the policy


RESULTS = {
    "open": Observed.ALLOWED,
    "refused": Observed.ALLOWED,
    "reply": Observed.ALLOWED,
    "timeout": Observed.DENIED,
    "noreply": Observed.DENIED,
    "notprobed": Observed.NOT_PROBED,
    "nobash": Observed.NOT_PROBED,
    "unreachable": Observed.ERROR,
    "error": Observed.ERROR,
}
"""Each result word of the probe snippet and what it means."""


@dataclass(frozen=True)
class VerifyCase:
    """One probe to send: from ``source`` to ``target`` at ``address``, and what the policy says."""

    source: NodeName
    target: NodeName
    address: IPAddress
    probe: Probe
    expected: Decision
    why: str  # "test 3", "rule 2 sample"

    def describe(self) -> str:
        """``test 3: app-1 → db-1 (10.0.0.3) tcp/5432``."""
        return f"{self.why}: {self.source} → {self.target} ({self.address}) {self.probe}"


@dataclass(frozen=True)
class VerifyResult:
    """A case and what its probe saw (``result`` is the snippet's word: open, timeout...)."""

    case: VerifyCase
    result: str

    @property
    def observed(self) -> Observed:
        """The observation."""
        return RESULTS.get(self.result, Observed.ERROR)

    @property
    def mismatch(self) -> bool:
        """True when the host did otherwise than the policy says (``policy verify`` exits 1)."""
        if self.observed is Observed.ALLOWED:
            return not self.case.expected.allowed
        if self.observed is Observed.DENIED:
            return self.case.expected.allowed
        return False

    def describe(self) -> str:
        """``test 3: app-1 → db-1 (10.0.0.3) tcp/5432: expected allow, observed denied (timeout)``."""
        return (
            f"{self.case.describe()}: expected {self.case.expected.action}, observed "
            f"{self.observed} ({self.result}); {self.case.expected.describe()}"
        )


def _addresses(resolved: ResolvedPolicy, name: NodeName) -> list[IPAddress]:
    node = resolved.node(name)
    return [node.address] + ([node.address6] if node.address6 is not None else [])


def _sample(probe_spec_low: int, proto: Proto) -> Probe:
    return Probe(proto, 0 if proto is Proto.ICMP else probe_spec_low)


def cases(resolved: ResolvedPolicy) -> list[VerifyCase]:
    """Every probe ``policy verify`` sends, without duplicates, tests first."""
    out: list[VerifyCase] = []
    seen: set[tuple[str, str, str, Probe]] = set()

    def add(source: NodeName, target: NodeName, probe: Probe, why: str) -> None:
        for address in _addresses(resolved, target):
            key = (source, target, str(address), probe)
            if key not in seen:
                seen.add(key)
                expected = decide(resolved, source, target, probe)
                out.append(VerifyCase(source, target, address, probe, expected, why))

    for test in resolved.policy.tests:
        for source in sorted(resolved.of(test.source)):
            for target in sorted(resolved.of(test.target)):
                if source != target:
                    add(source, target, test.probe, f"test {test.index}")
    for item in resolved.rules:
        pairs = [(s, t) for s in sorted(item.sources) for t in sorted(item.targets) if s != t]
        if not pairs:
            continue
        source, target = pairs[0]
        for spec in item.rule.ports:
            if spec.proto is not Proto.ANY:
                add(source, target, _sample(spec.low, spec.proto), f"{item.rule.origin} sample")
    return out
