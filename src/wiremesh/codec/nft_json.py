"""Reading our table back: ``nft -j list table inet wiremesh`` (libnftables-json(5)) into an
:class:`~wiremesh.model.nft.ObservedTable`.

The parser knows exactly the expressions wiremesh writes, in the shapes nft lists them (checked
against nft 1.0.6 by the integration tests): ``match`` of ``meta iifname``, ``ct state``, ``ip``/
``ip6 saddr`` against a set reference, ``tcp``/``udp dport`` (a number or a ``range``), ``icmp``/
``icmpv6 type``; ``counter``; the verdicts ``accept``, ``drop``, ``return``, ``jump``. A rule with
anything else is kept as *unknown*, with a readable text, so that the diff reports it instead of
silently ignoring it. Objects of other kinds (maps, named counters, flowtables...) are reported too.
"""

from __future__ import annotations

import json
from ipaddress import ip_address, ip_network, summarize_address_range
from typing import Any

from wiremesh.errors import ValidationError
from wiremesh.model.addressing import IPNetwork
from wiremesh.model.nft import (
    FAMILY,
    TABLE,
    AddrRange,
    BaseHook,
    Element,
    NftRule,
    ObservedChain,
    ObservedRule,
    ObservedSet,
    ObservedTable,
)

_VERDICTS = ("accept", "drop", "return")
_ADDR_TYPES = {"ipv4_addr": 4, "ipv6_addr": 6}


class _Unknown(Exception):
    """An expression outside the subset wiremesh writes."""


def _value_text(value: Any) -> str:
    if isinstance(value, dict):
        if "set" in value:
            return "{ " + ", ".join(_value_text(v) for v in value["set"]) + " }"
        if "range" in value and isinstance(value["range"], list):
            return "-".join(_value_text(v) for v in value["range"])
        if "prefix" in value and isinstance(value["prefix"], dict):
            p = value["prefix"]
            return f"{_value_text(p.get('addr'))}/{p.get('len')}"
        return json.dumps(value, sort_keys=True)
    if isinstance(value, list):
        return ",".join(_value_text(v) for v in value)
    return str(value)


def _left_text(left: Any) -> str:
    if isinstance(left, dict):
        if "payload" in left and isinstance(left["payload"], dict):
            p = left["payload"]
            return f"{p.get('protocol')} {p.get('field')}"
        for key in ("meta", "ct"):
            if key in left and isinstance(left[key], dict):
                return f"{key} {left[key].get('key')}"
    return json.dumps(left, sort_keys=True)


def expr_text(expr: Any) -> str:
    """One expression in nft-like text (for reports of rules wiremesh did not write)."""
    if not isinstance(expr, dict) or len(expr) != 1:
        return json.dumps(expr, sort_keys=True)
    ((key, body),) = expr.items()
    if key == "match" and isinstance(body, dict):
        op = body.get("op", "==")
        op_text = "" if op in ("==", "in") else f"{op} "
        return f"{_left_text(body.get('left'))} {op_text}{_value_text(body.get('right'))}"
    if key == "counter":
        return "counter"
    if key in _VERDICTS and body is None:
        return str(key)
    if key in ("jump", "goto") and isinstance(body, dict):
        return f"{key} {body.get('target')}"
    return json.dumps(expr, sort_keys=True)


def _match(body: dict[str, Any], rule: dict[str, Any]) -> None:
    left, right, op = body.get("left"), body.get("right"), body.get("op")
    if not isinstance(left, dict) or len(left) != 1:
        raise _Unknown
    ((kind, spec),) = left.items()
    if not isinstance(spec, dict):
        raise _Unknown
    if kind == "meta" and spec == {"key": "iifname"} and op == "==":
        names = right["set"] if isinstance(right, dict) and "set" in right else [right]
        if not names or not all(isinstance(n, str) for n in names):
            raise _Unknown
        _put(rule, "iifnames", frozenset(names))
    elif kind == "ct" and spec == {"key": "state"} and op in ("in", "=="):
        states = right if isinstance(right, list) else [right]
        if not states or not all(isinstance(s, str) for s in states):
            raise _Unknown
        _put(rule, "ct_states", frozenset(states))
    elif kind == "payload":
        _payload(spec, op, right, rule)
    else:
        raise _Unknown


def _payload(spec: dict[str, Any], op: Any, right: Any, rule: dict[str, Any]) -> None:
    proto, field = spec.get("protocol"), spec.get("field")
    if op != "==" or set(spec) != {"protocol", "field"}:
        raise _Unknown
    if proto in ("ip", "ip6") and field == "saddr":
        if not isinstance(right, str) or not right.startswith("@") or len(right) < 2:
            raise _Unknown
        _put(rule, "family", 4 if proto == "ip" else 6)
        _put(rule, "saddr_set", right[1:])
    elif proto in ("tcp", "udp") and field == "dport":
        if isinstance(right, int) and not isinstance(right, bool):
            ports = (right, right)
        elif isinstance(right, dict) and isinstance(right.get("range"), list):
            low, high = right["range"]
            if not isinstance(low, int) or not isinstance(high, int):
                raise _Unknown
            ports = (low, high)
        else:
            raise _Unknown
        _put(rule, "proto", proto)
        _put(rule, "dports", ports)
    elif proto in ("icmp", "icmpv6") and field == "type" and isinstance(right, str):
        _put(rule, "proto", proto)
        _put(rule, "icmp_type", right)
    else:
        raise _Unknown


def _put(rule: dict[str, Any], key: str, value: Any) -> None:
    if key in rule:
        raise _Unknown  # twice the same match: not ours
    rule[key] = value


def _rule(body: dict[str, Any]) -> ObservedRule:
    exprs = body.get("expr", [])
    comment = body.get("comment")
    text = " ".join(expr_text(e) for e in exprs) if isinstance(exprs, list) else str(exprs)
    if isinstance(comment, str):
        text += f' comment "{comment}"'
    handle = body.get("handle") if isinstance(body.get("handle"), int) else None
    fields: dict[str, Any] = {}
    packets = nbytes = None
    for expr in exprs if isinstance(exprs, list) else []:
        if isinstance(expr, dict) and isinstance(expr.get("counter"), dict):
            packets, nbytes = expr["counter"].get("packets"), expr["counter"].get("bytes")
    try:
        if (
            not isinstance(exprs, list)
            or not exprs
            or (comment is not None and not isinstance(comment, str))
        ):
            raise _Unknown
        *matches, verdict = exprs
        if not isinstance(verdict, dict) or len(verdict) != 1:
            raise _Unknown
        ((vkey, vbody),) = verdict.items()
        if vkey in _VERDICTS and vbody is None:
            fields["verdict"] = vkey
        elif vkey == "jump" and isinstance(vbody, dict) and isinstance(vbody.get("target"), str):
            fields["verdict"], fields["target"] = "jump", vbody["target"]
        else:
            raise _Unknown
        for expr in matches:
            if not isinstance(expr, dict) or len(expr) != 1:
                raise _Unknown
            ((key, value),) = expr.items()
            if key == "match" and isinstance(value, dict):
                _match(value, fields)
            elif key == "counter" and isinstance(value, dict) and "counter" not in fields:
                fields["counter"] = True
            else:
                raise _Unknown
        if comment is not None:
            fields["comment"] = comment
        return ObservedRule(NftRule(**fields), text, handle, packets, nbytes)
    except (_Unknown, ValueError, TypeError):
        return ObservedRule(None, text, handle, packets, nbytes)


def _element(value: Any) -> Element:
    if isinstance(value, dict) and "elem" in value and isinstance(value["elem"], dict):
        value = value["elem"].get("val")  # an element with a timeout, counter or comment
    if isinstance(value, str):
        return ip_network(value)
    if isinstance(value, dict) and isinstance(value.get("prefix"), dict):
        prefix = value["prefix"]
        return ip_network(f"{prefix['addr']}/{prefix['len']}", strict=False)
    if isinstance(value, dict) and isinstance(value.get("range"), list):
        first, last = (ip_address(v) for v in value["range"])
        if first.version != last.version or int(first) > int(last):
            raise ValueError(f"bad range {value!r}")
        nets: list[IPNetwork] = list(summarize_address_range(first, last))
        return nets[0] if len(nets) == 1 else AddrRange(first, last)
    raise ValueError(f"unknown set element {value!r}")


def _set(body: dict[str, Any]) -> ObservedSet:
    name = str(body.get("name"))
    kind = body.get("type")
    flags = body.get("flags", [])
    flags = [flags] if isinstance(flags, str) else flags
    detail = f"type {_value_text(kind)}" + (
        f", flags {', '.join(map(str, flags))}" if flags else ""
    )
    family = _ADDR_TYPES.get(kind) if isinstance(kind, str) else None
    if "map" in body:
        family = None
    try:
        elements = frozenset(_element(e) for e in body.get("elem", []))
    except (ValueError, TypeError, KeyError):
        return ObservedSet(
            name, None, False, frozenset(), detail + ", elements wiremesh cannot read"
        )
    if family is not None and any(e.version != family for e in elements):
        family = None
    return ObservedSet(name, family, list(flags) == ["interval"], elements, detail)


def _chain(body: dict[str, Any]) -> tuple[str, BaseHook | None]:
    name = str(body.get("name"))
    if "hook" not in body:
        return name, None
    prio = body.get("prio", 0)
    return name, BaseHook(
        hook=str(body.get("hook")),
        priority=prio if isinstance(prio, int) else -1_000_000,
        policy=str(body.get("policy", "accept")),
        type=str(body.get("type")),
    )


def parse_listing(text: str) -> ObservedTable:
    """Parse the output of ``nft -j list table inet wiremesh``."""
    try:
        data = json.loads(text)
        items = data["nftables"]
        if not isinstance(items, list):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise ValidationError(
            "the host's nft -j output is not the JSON of libnftables-json(5)",
            "check that the host's nft supports -j (nftables 0.9.0 or later)",
        ) from None
    sets: list[ObservedSet] = []
    chains: dict[str, tuple[BaseHook | None, list[ObservedRule]]] = {}
    others: list[str] = []
    for item in items:
        if not isinstance(item, dict) or len(item) != 1:
            continue
        ((kind, body),) = item.items()
        if kind in ("metainfo", "table") or not isinstance(body, dict):
            continue
        if body.get("family", FAMILY) != FAMILY or body.get("table", TABLE) != TABLE:
            continue
        if kind in ("set", "map"):
            if kind == "map":
                body = {**body, "map": True}
            sets.append(_set(body))
        elif kind == "chain":
            name, base = _chain(body)
            chains.setdefault(name, (base, []))
        elif kind == "rule":
            chain_name = str(body.get("chain"))
            chains.setdefault(chain_name, (None, []))[1].append(_rule(body))
        else:
            others.append(f"{kind} {body.get('name', '')}".strip())
    return ObservedTable(
        sets=tuple(sets),
        chains=tuple(ObservedChain(n, base, tuple(rules)) for n, (base, rules) in chains.items()),
        others=tuple(others),
    )
