"""The trust rule for an ssh_config that comes with the inventory (docs/security.md).

An ssh_config named by the inventory (``[mesh] ssh_config``) is not trusted: one that holds a
directive which runs local commands or reaches into the operator's machine (see
:mod:`wiremesh.codec.ssh_config`), in itself or in a file it ``Include``\\ s, is refused before any
connection, naming file, line and directive, unless the user says ``--trust-ssh-config`` (or
``WIREMESH_TRUST_SSH_CONFIG=1``). An ssh_config given with ``--ssh-config`` (or
``$WIREMESH_SSH_CONFIG``) and the user's own ``~/.ssh/config`` are the user's own choice: trusted.
"""

from __future__ import annotations

import glob
from pathlib import Path

from wiremesh.codec.ssh_config import Finding, Include, scan
from wiremesh.errors import ValidationError, quote
from wiremesh.store.reading import read_text

MAX_DEPTH = 16
"""Include nesting, as OpenSSH's readconf.c READCONF_MAX_DEPTH."""


def _included(pattern: str, directory: Path) -> list[Path]:
    """The files an Include pattern names. Relative patterns are taken from ``~/.ssh`` (OpenSSH
    and asyncssh do so for user configs) and, to be safe, from the including file's directory."""
    expanded = Path(pattern).expanduser()
    bases = [expanded] if expanded.is_absolute() else [Path("~/.ssh").expanduser() / expanded]
    if not expanded.is_absolute():
        bases.append(directory / expanded)
    out: list[Path] = []
    for base in bases:
        out += [Path(p) for p in sorted(glob.glob(str(base))) if Path(p).is_file()]
    return out


def _inside(path: Path, directories: list[Path]) -> bool:
    return any(path == d or d in path.parents for d in directories)


def _known_hosts_problems(entry: Include, allowed: list[Path]) -> list[Finding]:
    """``UserKnownHostsFile`` outside ``allowed``: ``--accept-new-host-keys`` appends a line to
    the first such file, so an inventory could make wiremesh write into any file of the user's."""
    out = []
    for name in entry.patterns:
        if name == "/dev/null":
            continue
        if "%" in name or "${" in name:
            where = "depends on the connection and cannot be checked"
        else:
            path = Path(name).expanduser().absolute().resolve()
            if _inside(path, allowed):
                continue
            where = "is outside the inventory's directory and ~/.ssh"
        out.append(
            Finding(
                entry.source,
                entry.line,
                "UserKnownHostsFile",
                f"{quote(name)} {where} (--accept-new-host-keys writes there)",
            )
        )
    return out


def findings(path: Path, inventory_dir: Path | None = None) -> list[Finding]:
    """Every risky directive in ``path`` and in the files it includes (recursively), and every
    ``UserKnownHostsFile`` outside ``inventory_dir`` and ``~/.ssh``."""
    out: list[Finding] = []
    seen: set[Path] = set()
    allowed = [Path("~/.ssh").expanduser().resolve()]
    if inventory_dir is not None:
        allowed.append(inventory_dir.resolve())

    def visit(file: Path, depth: int) -> None:
        real = file.resolve()
        if real in seen:
            return
        seen.add(real)
        try:
            text = read_text(file, "ssh_config")
        except FileNotFoundError:
            return
        scanned = scan(text, str(file))
        out.extend(scanned.findings)
        for entry in scanned.known_hosts:
            out.extend(_known_hosts_problems(entry, allowed))
        for include in scanned.includes:
            for pattern in include.patterns:
                if "%" in pattern or "${" in pattern:
                    # Tokens and variables are expanded per connection: the file cannot be known here.
                    out.append(
                        Finding(
                            include.source,
                            include.line,
                            "Include",
                            f"names {quote(pattern)}, which depends on the connection and "
                            "cannot be checked",
                        )
                    )
                    continue
                if depth + 1 >= MAX_DEPTH:
                    out.append(
                        Finding(
                            include.source, include.line, "Include", "nests too deeply to check"
                        )
                    )
                    continue
                for target in _included(pattern, file.parent):
                    visit(target, depth + 1)

    visit(path, 0)
    return out


def check_inventory_ssh_config(path: Path, trusted: bool, inventory_dir: Path) -> None:
    """Refuse the inventory's ssh_config ``path`` when it acts on this machine, unless ``trusted``."""
    if trusted:
        return
    found = findings(path, inventory_dir)
    if not found:
        return
    lines = "\n  ".join(f.describe() for f in found)
    raise ValidationError(
        f"the inventory's ssh_config {path} can act on this machine, and an inventory's "
        f"ssh_config is not trusted:\n  {lines}",
        "read it; if you trust it, run again with --trust-ssh-config (or set "
        "WIREMESH_TRUST_SSH_CONFIG=1), or pass your own with --ssh-config PATH; see docs/security.md",
    )
