"""A small interpreter of the nftables subset wiremesh writes (pure): what our table does with one
packet. Used by the property tests: compiled and read-back tables must agree with the policy
evaluator.

Semantics, from nft(8) "CHAINS" and "VERDICT STATEMENT": every base chain on the hook sees the
packet; within a chain, rules run in order; ``accept`` ends this base chain's evaluation (the packet
goes on to the other base chains, ours and other tables'), ``drop`` ends it for good, ``jump``
runs the target chain and comes back unless that chain decided, ``return`` goes back to the caller
(or, in a base chain, to the chain's policy). A match on a field the packet does not have (``tcp
dport`` of a UDP packet, ``ip saddr`` of an IPv6 packet in the inet family) does not match.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from wiremesh.model.addressing import IPAddress
from wiremesh.model.nft import NftChain, NftRule, NftTable, element_contains


class Verdict(StrEnum):
    """What our table does with a packet."""

    ACCEPT = "accept"  # our table lets it go on (other tables still decide)
    DROP = "drop"


@dataclass(frozen=True)
class Packet:
    """The fields our rules look at."""

    iifname: str
    saddr: IPAddress
    proto: str  # "tcp", "udp", "icmp", "icmpv6", or another protocol name
    dport: int | None = None  # tcp and udp
    icmp_type: str | None = None  # icmp and icmpv6
    ct_state: str = "new"  # conntrack: new, established, related, invalid

    @property
    def family(self) -> int:
        """4 or 6."""
        return self.saddr.version


def _matches(table: NftTable, rule: NftRule, packet: Packet) -> bool:
    if rule.iifnames and packet.iifname not in rule.iifnames:
        return False
    if rule.ct_states and packet.ct_state not in rule.ct_states:
        return False
    if rule.saddr_set is not None:
        if packet.family != rule.family:
            return False
        found = table.get_set(rule.saddr_set)
        if found is None or found.family != packet.family:
            return False
        if not any(element_contains(e, packet.saddr) for e in found.elements):
            return False
    if rule.proto is not None:
        if packet.proto != rule.proto:
            return False
        if rule.proto == "icmp" and packet.family != 4:
            return False
        if rule.proto == "icmpv6" and packet.family != 6:
            return False
    if rule.dports is not None and (
        packet.dport is None or not rule.dports[0] <= packet.dport <= rule.dports[1]
    ):
        return False
    return rule.icmp_type is None or packet.icmp_type == rule.icmp_type


def _run(table: NftTable, chain: NftChain, packet: Packet, depth: int) -> str | None:
    """The verdict of ``chain`` ("accept", "drop"), or None when it falls through or returns."""
    if depth > 16:  # nft refuses loops; a read-back table cannot have one either
        raise ValueError(f"chain {chain.name}: jumps too deep")
    for rule in chain.rules:
        if not _matches(table, rule, packet):
            continue
        if rule.verdict in ("accept", "drop"):
            return rule.verdict
        if rule.verdict == "return":
            return None
        if rule.verdict == "jump":
            target = table.chain(rule.target or "")
            if target is None:
                raise ValueError(f"chain {chain.name}: jump to unknown chain {rule.target}")
            outcome = _run(table, target, packet, depth + 1)
            if outcome is not None:
                return outcome
            continue
        raise ValueError(f"unknown verdict {rule.verdict!r}")
    return None


def evaluate_table(table: NftTable | None, packet: Packet, hook: str = "input") -> Verdict:
    """What ``table`` (None: no table) does with ``packet`` on ``hook``."""
    if table is None:
        return Verdict.ACCEPT
    for chain in table.chains:
        if chain.base is None or chain.base.hook != hook:
            continue
        outcome = _run(table, chain, packet, 0) or chain.base.policy
        if outcome == "drop":
            return Verdict.DROP
    return Verdict.ACCEPT
