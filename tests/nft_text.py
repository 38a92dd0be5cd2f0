"""A parser of exactly the nft text subset wiremesh writes, written apart from the renderer (it
shares no code with :mod:`wiremesh.codec.nftables`), for tests: render, parse back, interpret.

It understands a full-replacement transaction (``table inet wiremesh {}``, ``delete table inet
wiremesh``, the table) and fails loudly on anything else.
"""

from __future__ import annotations

import re
from ipaddress import ip_network

from wiremesh.model.nft import (
    BaseHook,
    Element,
    NftChain,
    NftRule,
    NftSet,
    NftTable,
    ObservedChain,
    ObservedRule,
    ObservedSet,
    ObservedTable,
)

_TOKEN = re.compile(r'"[^"]*"|[{},]|[^\s{},]+')
_BASE = re.compile(r"^type (\w+) hook (\w+) priority (\w+); policy (\w+);$")


def _rule(line: str) -> NftRule:
    tokens: list[str] = _TOKEN.findall(line)
    words = [w[1:-1] if w.startswith('"') else w for w in tokens]
    fields: dict[str, object] = {}
    i = 0

    def take() -> str:
        nonlocal i
        i += 1
        return words[i - 1]

    while i < len(words):
        word = take()
        if word == "iifname":
            nxt = take()
            if nxt == "{":
                names = []
                while (item := take()) != "}":
                    if item != ",":
                        names.append(item)
                fields["iifnames"] = frozenset(names)
            else:
                fields["iifnames"] = frozenset({nxt})
        elif word == "ct":
            assert take() == "state"
            states = [take()]
            while i < len(words) and words[i] == ",":
                take()
                states.append(take())
            fields["ct_states"] = frozenset(states)
        elif word in ("ip", "ip6"):
            assert take() == "saddr"
            ref = take()
            assert ref.startswith("@"), line
            fields["family"] = 4 if word == "ip" else 6
            fields["saddr_set"] = ref[1:]
        elif word in ("tcp", "udp"):
            assert take() == "dport"
            ports = take()
            low, _, high = ports.partition("-")
            fields["proto"] = word
            fields["dports"] = (int(low), int(high or low))
        elif word in ("icmp", "icmpv6"):
            assert take() == "type"
            fields["proto"] = word
            fields["icmp_type"] = take()
        elif word == "counter":
            fields["counter"] = True
        elif word in ("accept", "drop", "return"):
            fields["verdict"] = word
        elif word == "jump":
            fields["verdict"] = "jump"
            fields["target"] = take()
        elif word == "comment":
            fields["comment"] = take()
        else:
            raise AssertionError(f"unknown word {word!r} in {line!r}")
    return NftRule(**fields)  # type: ignore[arg-type]


def _elements(text: str) -> frozenset[Element]:
    out: set[Element] = set()
    for item in text.split(","):
        if item.strip():
            out.add(ip_network(item.strip()))
    return frozenset(out)


def parse_transaction(text: str) -> NftTable | None:
    """The table a full-replacement transaction leaves (None: it only deletes ours)."""
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    assert lines[:2] == ["table inet wiremesh {}", "delete table inet wiremesh"], lines[:2]
    rest = lines[2:]
    if not rest:
        return None
    assert rest[0] == "table inet wiremesh {" and rest[-1] == "}", (rest[0], rest[-1])
    body = rest[1:-1]
    sets: list[NftSet] = []
    chains: list[NftChain] = []
    i = 0
    while i < len(body):
        head = body[i]
        if head.startswith("set "):
            name = head.split()[1]
            i += 1
            family, elements, flags = 0, "", ""
            while body[i] != "}":
                line = body[i]
                if line.startswith("type "):
                    family = {"ipv4_addr": 4, "ipv6_addr": 6}[line.split()[1]]
                elif line.startswith("flags "):
                    flags = line.split()[1]
                elif line.startswith("elements = {"):
                    text_ = line[len("elements = {") :]
                    while not text_.rstrip().endswith("}"):
                        i += 1
                        text_ += body[i]
                    elements = text_.rstrip()[:-1]
                else:
                    elements += line  # continuation of a wrapped element list
                i += 1
            assert flags == "interval", head
            sets.append(NftSet(name, family, _elements(elements)))
        elif head.startswith("chain "):
            name = head.split()[1]
            i += 1
            base = None
            rules = []
            while body[i] != "}":
                found = _BASE.match(body[i])
                if found:
                    kind, hook, prio, policy = found.groups()
                    base = BaseHook(hook, 0 if prio == "filter" else int(prio), policy, kind)
                else:
                    rules.append(_rule(body[i]))
                i += 1
            chains.append(NftChain(name, base, tuple(rules)))
        else:
            raise AssertionError(f"unexpected line {head!r}")
        i += 1
    return NftTable(tuple(sorted(sets, key=lambda s: s.name)), tuple(chains))


def as_observed(table: NftTable) -> ObservedTable:
    """A parsed table as a host would report it (every rule known)."""
    return ObservedTable(
        sets=tuple(ObservedSet(s.name, s.family, True, s.elements) for s in table.sets),
        chains=tuple(
            ObservedChain(c.name, c.base, tuple(ObservedRule(r, "") for r in c.rules))
            for c in table.chains
        ),
    )
