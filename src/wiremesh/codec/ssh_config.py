"""OpenSSH client config (ssh_config(5)) text: the directives that act on the operator's machine.

An inventory may name an ssh_config (``[mesh] ssh_config``), and inventories are meant to be shared.
Some directives of such a file run programs on the machine of whoever runs ``wiremesh plan``, or
hand the hosts a way into it; asyncssh (like OpenSSH) honours several of them while it connects, and
``Match exec`` already while it reads the file. This module finds them, line by line (pure: the
caller reads the files, also those named by ``Include``; see :mod:`wiremesh.ops.ssh_trust`).

Keywords are case-insensitive and separated from their arguments by blanks or ``=``, as ssh_config(5)
says; a directive counts wherever it appears (inside any ``Host`` or ``Match`` block), since which
block applies depends on the host.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

# keyword (lower case) -> what it lets the file do. A value of "none"/"no" (the default) is harmless.
RISKY: dict[str, str] = {
    "proxycommand": "runs a local command to connect",
    "localcommand": "runs a local command after connecting",
    "permitlocalcommand": "allows LocalCommand to run local commands",
    "knownhostscommand": "runs a local command to list host keys",
    "pkcs11provider": "loads a shared library into the SSH client",
    "securitykeyprovider": "loads a shared library into the SSH client",
    "forwardagent": "lets the hosts use your ssh-agent (and your keys) to log in elsewhere",
    "forwardx11": "gives the hosts access to your X display",
    "forwardx11trusted": "gives the hosts full access to your X display",
    "localforward": "opens a listening port on your machine",
    "remoteforward": "lets the hosts connect into your network",
    "dynamicforward": "opens a SOCKS proxy on your machine",
}
HARMLESS_VALUES = {"none", "no", "false", "internal"}

_KEYWORD = re.compile(r"\s*([A-Za-z0-9]+)\s*(?:=\s*|\s+|$)(.*)")
_EXEC = re.compile(r"(?:^|[\s\"'=!,])exec(?:[\s\"'=]|$)", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    """One directive that acts on the operator's machine: where it is and what it does."""

    source: str
    line: int
    directive: str
    what: str

    def describe(self) -> str:
        """``ssh_config line 3: ProxyCommand runs a local command to connect``."""
        return f"{self.source} line {self.line}: {self.directive} {self.what}"


@dataclass(frozen=True)
class Include:
    """An ``Include`` directive: the patterns it names (``~``, globs; tokens are not expanded)."""

    source: str
    line: int
    patterns: tuple[str, ...]


def _words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote: asyncssh would refuse the file; split plainly
        return text.split()


@dataclass(frozen=True)
class Scan:
    """What one file holds that matters for trust."""

    findings: tuple[Finding, ...]
    includes: tuple[Include, ...]
    known_hosts: tuple[Include, ...]
    """``UserKnownHostsFile`` directives: wiremesh writes there with ``--accept-new-host-keys``."""


def scan(text: str, source: str) -> Scan:
    """The risky directives of one file, its ``Include`` directives (to be read by the caller) and
    its ``UserKnownHostsFile`` paths (to be checked by the caller)."""
    findings: list[Finding] = []
    includes: list[Include] = []
    known_hosts: list[Include] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        found = _KEYWORD.fullmatch(line)
        if found is None:
            continue
        keyword, rest = found[1], found[2].strip()
        lower = keyword.lower()
        if lower == "include":
            includes.append(Include(source, number, tuple(_words(rest))))
        elif lower == "userknownhostsfile":
            known_hosts.append(Include(source, number, tuple(_words(rest))))
        elif lower == "match" and _EXEC.search(rest):
            findings.append(Finding(source, number, "Match exec", "runs a local command to decide"))
        elif lower in RISKY:
            value = (_words(rest) or [""])[0].lower()
            if value not in HARMLESS_VALUES:
                findings.append(Finding(source, number, keyword, RISKY[lower]))
    return Scan(tuple(findings), tuple(includes), tuple(known_hosts))
