"""SSH material of a lab: the client identity, host keys, ``known_hosts`` and ``ssh_config``.

Host keys are generated per host (ed25519, with ``cryptography``: no process per key), and the
``known_hosts`` lines are built from what each host's sshd actually presents (``ssh-keyscan``), checked
against the generated key, so ``StrictHostKeyChecking yes`` works from the first connection.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from wiremesh.errors import OperationError

IDENTITY = "id_ed25519"
KNOWN_HOSTS = "known_hosts"
SSH_CONFIG = "ssh_config"


@dataclass(frozen=True)
class HostKey:
    """An OpenSSH key pair: ``private`` in OpenSSH PEM, ``public`` as ``ssh-ed25519 AAAA...``."""

    private: bytes
    public: str

    def __repr__(self) -> str:  # never show a private key (design.md, style 8)
        return f"HostKey(public={self.public!r})"


def generate_host_key() -> HostKey:
    """A new ed25519 host key."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return HostKey(private=private, public=public.decode())


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file with mode 0600 from the start (no window with looser permissions)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def generate_identity(path: Path, comment: str) -> str:
    """Create the client identity at ``path`` (``ssh-keygen -t ed25519``); returns the public key line."""
    proc = subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        raise OperationError(f"ssh-keygen failed: {proc.stderr.strip()}")
    os.chmod(path, 0o600)
    return path.with_suffix(".pub").read_text().strip()


def key_body(line: str) -> str:
    """``type base64`` of a public key line, without a comment."""
    parts = line.split()
    return " ".join(parts[:2])


def parse_keyscan(output: str) -> dict[str, str]:
    """``ssh-keyscan`` output to ``{host: "ssh-ed25519 AAAA..."}`` (comment lines skipped).

    ``host`` is as ssh-keyscan prints it: ``198.51.100.11``, or ``[198.51.100.201]:2214`` for a port
    other than 22.
    """
    keys = {}
    for line in output.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) >= 3:
            keys[parts[0]] = f"{parts[1]} {parts[2]}"
    return keys


def known_host(address: IPv4Address | str, port: int = 22) -> str:
    """How known_hosts (and ssh-keyscan) name ``address`` at ``port``: ``[address]:port`` unless 22."""
    return str(address) if port == 22 else f"[{address}]:{port}"


def keyscan(
    addresses: Sequence[IPv4Address | tuple[IPv4Address, int]], timeout: int = 5
) -> dict[str, str]:
    """The ed25519 host keys the sshd at each address (and port, default 22) presents, keyed by
    :func:`known_host`.

    One ``ssh-keyscan`` handles its hosts concurrently but is bound by its own CPU (each connection
    makes a fresh sntrup761x25519 key exchange key, tens of ms here), so one runs per CPU, and one per
    port (``-p`` applies to all hosts of a run).
    """
    by_port: dict[int, list[IPv4Address]] = {}
    for item in addresses:
        address, port = item if isinstance(item, tuple) else (item, 22)
        by_port.setdefault(port, []).append(address)
    jobs = max(1, min(os.cpu_count() or 1, 8))
    chunks = [
        (port, group[i::jobs])
        for port, group in by_port.items()
        for i in range(min(jobs, len(group)))
    ]
    running = [
        subprocess.Popen(
            ["ssh-keyscan", "-T", str(timeout), "-t", "ed25519", "-p", str(port), *map(str, chunk)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for port, chunk in chunks
    ]
    keys: dict[str, str] = {}
    for proc in running:
        out, _ = proc.communicate()
        keys.update(parse_keyscan(out))
    return keys


@dataclass(frozen=True)
class SshHost:
    """What ``known_hosts`` and ``ssh_config`` need about one host."""

    alias: str
    address: IPv4Address
    host_key: str
    """``ssh-ed25519 AAAA...`` as presented by the host."""
    port: int = 22
    """Where its sshd is reached: 22, or the port its NAT router forwards to it."""


def render_known_hosts(hosts: Iterable[SshHost]) -> str:
    """One line per host naming both its alias and its address: ``lab1,198.51.100.11 ssh-ed25519 ...``;
    for a port other than 22 both in brackets (sshd(8), SSH_KNOWN_HOSTS FILE FORMAT):
    ``[lab5]:2215,[198.51.100.201]:2215 ssh-ed25519 ...``. OpenSSH looks up the HostName with its port,
    asyncssh the alias or the address with the port."""
    return "".join(
        f"{known_host(h.alias, h.port)},{known_host(h.address, h.port)} {key_body(h.host_key)}\n"
        for h in hosts
    )


def render_ssh_config(hosts: Iterable[SshHost], directory: Path) -> str:
    """An OpenSSH client config with one ``Host`` block per lab host, strict host key checking.

    Paths are absolute so the file works from any working directory (and from ``-F``).
    """
    identity = directory / IDENTITY
    known = directory / KNOWN_HOSTS
    out = [
        "# wiremesh lab: `ssh -F <this file> lab1`. Written by `wiremesh lab up`; removed by `lab down`.\n"
    ]
    for h in hosts:
        out.append(
            f"\nHost {h.alias}\n"
            f"  HostName {h.address}\n"
            f"  User root\n"
            f"  Port {h.port}\n"
            f"  IdentityFile {identity}\n"
            f"  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {known}\n"
            f"  GlobalKnownHostsFile /dev/null\n"
            f"  StrictHostKeyChecking yes\n"
            f"  PasswordAuthentication no\n"
            f"  KbdInteractiveAuthentication no\n"
            f"  ConnectTimeout 10\n"
            f"  ServerAliveInterval 15\n"
        )
    return "".join(out)


def render_sshd_config(
    host: str, listen: Iterable[IPv4Address | IPv6Address], port: int = 22
) -> str:
    """sshd_config of one lab host: key login only, listening on its underlay address(es) only."""
    lines = [f"# wiremesh lab host {host}: written by `wiremesh lab up`."]
    lines += [f"ListenAddress {a}" for a in listen]
    lines += [
        f"Port {port}",
        "HostKey /etc/ssh/ssh_host_ed25519_key",
        "PidFile /run/sshd.pid",
        "UsePAM no",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "AuthorizedKeysFile .ssh/authorized_keys",
        # Many tool connections arrive at once (apply fans out to every host); the default 10:30:100 would
        # drop some of them at random (sshd_config(5), MaxStartups).
        "MaxStartups 100:30:200",
        "MaxSessions 100",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "AcceptEnv LANG LC_*",
        "Subsystem sftp /usr/lib/openssh/sftp-server",
    ]
    return "\n".join(lines) + "\n"
