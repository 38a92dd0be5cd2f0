"""A throwaway network namespace for tests that load configs into real WireGuard (root only).

Everything runs in ``ip netns exec NS unshare --mount --pid --fork --kill-child``, with a private tmpfs on
``/run`` so that wireguard-go's control socket (``/var/run/wireguard/<iface>.sock``) cannot clash with
anything else on the machine; when the shell ends, the PID namespace and all it started are gone.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


def require_root() -> None:
    """Fail (not skip) when the integration tier cannot run: CI runs it as root."""
    if os.geteuid() != 0:
        pytest.fail("this integration test needs root (network namespaces, wireguard-go)")


@contextmanager
def throwaway_netns() -> Iterator[str]:
    """A new, empty network namespace, always deleted afterwards."""
    require_root()
    name = f"wm-t{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def run_in(ns: str, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a shell script in ``ns`` with private /run and its own PID namespace."""
    wrapped = "mount -t tmpfs tmpfs /run && " + script
    return subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "unshare",
            "--mount",
            "--pid",
            "--fork",
            "--kill-child",
            "--mount-proc",
            "sh",
            "-ec",
            wrapped,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
