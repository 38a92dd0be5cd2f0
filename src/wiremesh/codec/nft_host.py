"""Parsing what the host snippets of :mod:`wiremesh.remote.nft` print (and the markers they print)."""

from __future__ import annotations

from ipaddress import ip_address

from wiremesh.codec.nft_json import parse_listing
from wiremesh.errors import ValidationError
from wiremesh.model.addressing import IPAddress
from wiremesh.model.nft_host import LastOutcome, NftHostState, PendingChange, UndoOutcome

SECTION = "@@wiremesh-nft "
PROBE = "@@probe "


def _sections(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(SECTION):
            current = out.setdefault(line[len(SECTION) :].strip(), [])
        elif current is not None:
            current.append(line)
    return out


def _int(text: str) -> int:
    return int(text) if text.isdigit() else 0


def parse_read(text: str) -> NftHostState:
    """The output of :func:`wiremesh.remote.nft.read`."""
    sections = _sections(text)
    if "end" not in sections:
        raise ValidationError(
            "the host's answer about its firewall was cut short", "run the command again"
        )
    table_lines = sections.get("table", [])
    head = table_lines[0] if table_lines else "error no answer"
    nft, table, error = True, None, None
    if head == "json":
        table = parse_listing("\n".join(table_lines[1:]))
    elif head == "no-nft":
        nft = False
    elif head != "absent":
        error = head.removeprefix("error").strip() or "nft failed"
    boot = (sections.get("boot") or ["missing"])[0].strip()
    pending: list[PendingChange] = []
    last = None
    now = 0
    for line in sections.get("confirm", []):
        words = line.split()
        if len(words) == 3 and words[0] == "pending":
            pending.append(PendingChange(words[1], _int(words[2])))
        elif len(words) == 4 and words[0] == "last" and words[1] in set(UndoOutcome):
            last = LastOutcome(UndoOutcome(words[1]), words[2], _int(words[3]))
        elif len(words) == 2 and words[0] == "now":
            now = _int(words[1])
    return NftHostState(
        nft=nft,
        table=table,
        error=error,
        boot_sha256=None if boot == "missing" else boot,
        pending=tuple(pending),
        last=last,
        now=now,
    )


def parse_probe(text: str) -> dict[tuple[str, IPAddress, int], str]:
    """The output of :func:`wiremesh.remote.nft.probe`: (proto, address, port) to result word
    (port 0 for icmp)."""
    out: dict[tuple[str, IPAddress, int], str] = {}
    for line in text.splitlines():
        if not line.startswith(PROBE):
            continue
        words = line[len(PROBE) :].split()
        if len(words) != 4:
            continue
        proto, address, port, result = words
        try:
            key = (proto, ip_address(address), 0 if port == "-" else int(port))
        except ValueError:
            continue
        out[key] = result
    return out
