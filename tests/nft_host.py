"""A throwaway "host" for nftables tests (root only): its own network namespace, a PID namespace
whose PID 1 stays alive between commands (so that a background process started by one command, like
the commit-confirmed undo, outlives it, as it outlives an SSH session on a real host), and private
tmpfs mounts on ``/run`` and ``/etc/wireguard`` (the snippets write there; nothing reaches the
machine's own files).

Commands run with ``nsenter`` into the host's namespaces, each a new process as each SSH session is.
Everything is killed (SIGKILL to the PID namespace's PID 1) and the network namespace deleted
afterwards, also when the test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netns import require_root, throwaway_netns

_INIT = (
    "mount -t tmpfs -o mode=0755 tmpfs /run && mount -t tmpfs -o mode=0700 tmpfs /etc/wireguard "
    "&& echo ready && exec sleep infinity"
)


@dataclass(frozen=True)
class NsHost:
    """A running throwaway host."""

    netns: str
    pid: int  # its PID 1, as the machine sees it

    def sh(
        self, script: str, stdin: str = "", timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Run a POSIX sh script on the host (a new process in its namespaces)."""
        return subprocess.run(
            ["nsenter", "-t", str(self.pid), "--net", "--mount", "--pid", "sh", "-c", script],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, script: str, stdin: str = "") -> str:
        """Run a script that must succeed; its stdout."""
        done = self.sh(script, stdin)
        assert done.returncode == 0, f"exit {done.returncode}: {done.stderr}\n{script}"
        return done.stdout


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


@contextmanager
def ns_host() -> Iterator[NsHost]:
    """A throwaway host; always torn down."""
    require_root()
    if not Path("/etc/wireguard").is_dir():
        pytest.fail("/etc/wireguard is missing (install wireguard-tools): the host mounts over it")
    with throwaway_netns() as ns:
        proc = subprocess.Popen(
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
                "-c",
                _INIT,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        init = 0
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", f"host did not start: {line!r}"
            children = _children(proc.pid)
            assert len(children) == 1, children
            init = children[0]
            yield NsHost(ns, init)
        finally:
            if init:
                with suppress(ProcessLookupError):
                    os.kill(init, signal.SIGKILL)
            proc.kill()
            proc.wait(timeout=10)
