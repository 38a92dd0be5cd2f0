"""nftables text: our table as an ``nft -f`` script, and the transactions that bring a host there.

Every transaction is one ``nft -f`` run, which the kernel applies atomically: all of it or nothing
(nft(8): "nft -f ... the whole file is applied atomically"; a failing command aborts the batch). The
full replacement is the idiom of nft(8) for replacing one table without touching the others::

    table inet wiremesh {}          # create it if absent, so that the delete cannot fail
    delete table inet wiremesh      # drop our table, and only ours
    table inet wiremesh { ... }     # the wanted content

No ``flush ruleset``: that would delete k3s', docker's, ufw's and firewalld's tables too. Conntrack
state lives outside the table, so connections that were allowed stay allowed across a replacement.

Every transaction ends with :data:`TRAILER`; the host loads nothing that does not end with it, so a
transaction cut short on its way (a dropped SSH session) is never loaded as a shorter, valid one.

Nothing here is built from unvalidated text: names are checked against what nft accepts as
identifiers, interface names against wg-quick's rule, comments against a small alphabet, and
elements are ``ipaddress`` values.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

from wiremesh.model.changes import Change
from wiremesh.model.nft import (
    FAMILY,
    TABLE,
    Element,
    HostFirewall,
    NftChain,
    NftRule,
    NftSet,
    NftTable,
    ObservedTable,
    element_key,
    element_text,
)
from wiremesh.model.nft_changes import AddElements, BootFileChange, RemoveElements
from wiremesh.model.nft_diff import element_only

HEADER = "# wiremesh: managed table inet wiremesh ('wiremesh apply' replaces it; edits are undone)"
TRAILER = "# wiremesh: end of transaction"

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")  # nft's scanner: identifiers
_IFNAME = re.compile(r"^[a-zA-Z0-9_=+.-]{1,15}$")  # wg-quick(8), IFNAMSIZ
_COMMENT = re.compile(r"^[A-Za-z0-9 ()._,:/-]{1,128}$")  # nft limits comments to 128 bytes
_WORD = re.compile(r"^[a-z0-9-]{1,32}$")  # verdicts, protocols, ct states, icmp types
_PER_LINE = 8


def _checked(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.match(value):
        raise ValueError(f"refusing to write {what} {value!r} into an nftables script")
    return value


def _elements(elements: Sequence[Element]) -> list[str]:
    return [element_text(e) for e in sorted(elements, key=element_key)]


def render_rule(rule: NftRule) -> str:
    """One rule in nft syntax, e.g. ``ip saddr @g_app_v4 tcp dport 5432 counter accept``."""
    parts: list[str] = []
    if rule.iifnames:
        names = [f'"{_checked(_IFNAME, n, "interface")}"' for n in sorted(rule.iifnames)]
        parts.append(
            f"iifname {names[0]}" if len(names) == 1 else f"iifname {{ {', '.join(names)} }}"
        )
    if rule.ct_states:
        states = ",".join(_checked(_WORD, s, "ct state") for s in sorted(rule.ct_states))
        parts.append(f"ct state {states}")
    if rule.saddr_set is not None:
        family = {4: "ip", 6: "ip6"}[rule.family or 0]
        parts.append(f"{family} saddr @{_checked(_IDENT, rule.saddr_set, 'set name')}")
    if rule.proto is not None:
        proto = _checked(_WORD, rule.proto, "protocol")
        if rule.dports is not None:
            low, high = rule.dports
            if not 1 <= low <= high <= 65535:
                raise ValueError(f"refusing to write port range {low}-{high}")
            parts.append(f"{proto} dport {low}" if low == high else f"{proto} dport {low}-{high}")
        elif rule.icmp_type is not None:
            parts.append(f"{proto} type {_checked(_WORD, rule.icmp_type, 'icmp type')}")
        else:
            parts.append(f"meta l4proto {proto}")
    if rule.counter:
        parts.append("counter")
    if rule.verdict == "jump":
        parts.append(f"jump {_checked(_IDENT, rule.target or '', 'chain name')}")
    elif rule.verdict in ("accept", "drop", "return"):
        parts.append(rule.verdict)
    else:
        raise ValueError(f"refusing to write verdict {rule.verdict!r}")
    if rule.comment is not None:
        parts.append(f'comment "{_checked(_COMMENT, rule.comment, "comment")}"')
    return " ".join(parts)


@lru_cache(maxsize=1024)
def _render_set(item: NftSet) -> tuple[str, ...]:
    """A set's lines. Cached: the same group's set is on many hosts (a frozenset keeps its hash,
    so looking a set up costs nothing next to writing a thousand addresses)."""
    kind = {4: "ipv4_addr", 6: "ipv6_addr"}[item.family]
    lines = [
        f"\tset {_checked(_IDENT, item.name, 'set name')} {{",
        f"\t\ttype {kind}",
        "\t\tflags interval",
    ]
    texts = _elements(tuple(item.elements))
    if texts:
        rows = [", ".join(texts[i : i + _PER_LINE]) for i in range(0, len(texts), _PER_LINE)]
        lines.append("\t\telements = { " + ",\n\t\t\t     ".join(rows) + " }")
    lines.append("\t}")
    return tuple(lines)


def _render_chain(chain: NftChain) -> list[str]:
    lines = [f"\tchain {_checked(_IDENT, chain.name, 'chain name')} {{"]
    if chain.base is not None:
        base = chain.base
        prio = "filter" if base.priority == 0 else str(int(base.priority))
        lines.append(
            f"\t\ttype {_checked(_WORD, base.type, 'chain type')} hook "
            f"{_checked(_WORD, base.hook, 'hook')} priority {prio}; "
            f"policy {_checked(_WORD, base.policy, 'policy')};"
        )
    lines += [f"\t\t{render_rule(rule)}" for rule in chain.rules]
    lines.append("\t}")
    return lines


def render_table(table: NftTable) -> str:
    """``table inet wiremesh { ... }`` in the layout ``nft list table`` uses."""
    lines = [f"table {FAMILY} {TABLE} {{"]
    blocks = [list(_render_set(s)) for s in table.sets] + [_render_chain(c) for c in table.chains]
    for index, block in enumerate(blocks):
        if index:
            lines.append("")
        lines += block
    lines.append("}")
    return "\n".join(lines) + "\n"


def full_transaction(table: NftTable | None) -> str:
    """Replace our table with ``table`` (None: delete it), leaving every other table alone."""
    lines = [HEADER, f"table {FAMILY} {TABLE} {{}}", f"delete table {FAMILY} {TABLE}"]
    text = "\n".join(lines) + "\n"
    if table is not None:
        text += render_table(table)
    return text + TRAILER + "\n"


def render(firewall: HostFirewall) -> str:
    """The host's whole wanted table as a full-replacement transaction: what is loaded on a first
    apply and what is kept on the host for boot."""
    return full_transaction(firewall.table)


def boot_diff(firewall: HostFirewall | None, boot_sha256: str | None, path: str) -> list[Change]:
    """Whether the host's boot file (its sha256 as read, None: absent) must be written or removed
    so that it holds :func:`render` of ``firewall``."""
    if firewall is None:
        return (
            [] if boot_sha256 is None else [BootFileChange(path, "no policy applies to this host")]
        )
    if boot_sha256 is None:
        return [BootFileChange(path, "new")]
    if hashlib.sha256(render(firewall).encode()).hexdigest() != boot_sha256:
        return [BootFileChange(path, "changed")]
    return []


def element_transaction(changes: Sequence[AddElements | RemoveElements]) -> str:
    """Add and delete set elements only: the rules stay as they are, and so does every packet's
    path through them. Deletions first: a subnet that grew (/24 to /16) would otherwise overlap
    its old self ("interval overlaps with an existing one")."""
    lines = [HEADER]
    ordered: list[AddElements | RemoveElements] = [
        c for c in changes if isinstance(c, RemoveElements)
    ]
    ordered += [c for c in changes if isinstance(c, AddElements)]
    for change in ordered:
        verb = "delete" if isinstance(change, RemoveElements) else "add"
        name = _checked(_IDENT, change.set_name, "set name")
        texts = _elements(change.elements)
        lines.append(f"{verb} element {FAMILY} {TABLE} {name} {{ {', '.join(texts)} }}")
    return "\n".join(lines) + "\n" + TRAILER + "\n"


def transaction(
    wanted: HostFirewall | None, observed: ObservedTable | None, changes: Sequence[Change]
) -> str | None:
    """What to load on the host for ``changes`` (the diff of ``wanted`` and ``observed``): None
    when there is nothing to do, element changes alone when only elements differ, else the full
    replacement (or the deletion of our table when none is wanted)."""
    if not changes:
        return None
    if observed is not None and wanted is not None and element_only(changes):
        return element_transaction(
            [c for c in changes if isinstance(c, AddElements | RemoveElements)]
        )
    return full_transaction(wanted.table if wanted is not None else None)
