"""One wiremesh run at a time on each host: a lock held on the host for the whole of an ``apply``.

The lock is ``flock`` on ``/run/wiremesh/<iface>.lock``, held by a small process on the host that
lives exactly as long as its SSH channel: it ends, and the lock goes, when the run releases it, when
the run's connection drops, or when the operator's machine dies. Nothing is left to clean up (``/run``
is a tmpfs; a stale lock file locks nothing). While it is held, ``<iface>.lock.owner`` says who holds
it (operator user and machine, PID, command, since when), so that a run that has to give up can say
who is in the way.

Every host of a run is locked at once with non-blocking attempts; if one is busy, the run releases
what it holds, waits a little (with jitter) and tries again, until its time is up. Two runs therefore
never deadlock on two hosts locked in different orders.
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import random
import re
import shlex
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

import asyncssh

from wiremesh.errors import OperationError
from wiremesh.remote.ssh import HostError, Session

RUN_DIR = "/run/wiremesh"
BACKOFF_S = (0.05, 0.4)  # pause between attempts: random, growing from the first to the second


def holder(command: str) -> str:
    """Who we are, for the owner file: ``wiremesh apply by alice@laptop (pid 4242) since
    2026-12-01T10:00:00Z`` (the operator's clock)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = f"wiremesh {command} by {user}@{socket.gethostname()} (pid {os.getpid()}) since {since}"
    return re.sub(r"[^A-Za-z0-9@._:()/ -]", "?", text)[:200]


def lock_script(interface: str, who: str) -> str:
    """Try the lock once (never waits): print ``locked`` and hold it until stdin closes, or print
    ``busy`` and the owner file. Hosts without ``flock`` print ``unlocked`` and hold nothing."""
    lock = shlex.quote(f"{RUN_DIR}/{interface}.lock")
    owner = shlex.quote(f"{RUN_DIR}/{interface}.lock.owner")
    # One fork (flock) when the lock is free: the shell itself holds fd 9 and waits on stdin with
    # its builtin read; the owner line is written by the lock holder only, so no temp file is needed.
    return f"""
umask 077
[ -d {RUN_DIR} ] || mkdir -p {RUN_DIR}
command -v flock >/dev/null 2>&1 || {{ echo unlocked; while read -r _; do :; done; exit 0; }}
exec 9>>{lock}
# Busy: say who holds it. The holder writes its line just after it got the lock, and removes it just
# before it lets go; with no line yet, or no more, look again, and try again if the holder is gone.
i=0
while ! flock -n 9; do
  if [ -s {owner} ] && read -r line < {owner} 2>/dev/null; then echo busy; echo "$line"; exit 0; fi
  i=$((i+1))
  [ "$i" -lt 10 ] || {{ echo busy; echo "another process (no owner file)"; exit 0; }}
  sleep 0.05
done
printf '%s\\n' {shlex.quote(who)} > {owner}
echo locked
while read -r _; do :; done
rm -f {owner}
"""


@dataclass
class HostLock:
    """A held lock: :meth:`release` ends it (closing the channel is enough)."""

    node: str
    process: asyncssh.SSHClientProcess[str]
    held: bool  # False on hosts without flock

    def release(self) -> None:
        """Let the host-side process end: it removes the owner file, and the lock goes with it."""
        with contextlib.suppress(OSError, asyncssh.Error):
            self.process.stdin.write_eof()
        self.process.close()


@dataclass(frozen=True)
class Busy:
    """A host whose lock another run holds."""

    node: str
    owner: str


async def _try(session: Session, interface: str, who: str) -> HostLock | Busy:
    process = await session.start(lock_script(interface, who), step="taking the host's lock")
    try:
        first = await asyncio.wait_for(process.stdout.readline(), session.command_timeout)
    except (TimeoutError, asyncssh.Error, OSError) as exc:
        process.close()
        raise HostError(
            session.node, f"taking the host's lock failed: {exc or 'timed out'}"
        ) from None
    word = first.strip()
    if word in ("locked", "unlocked"):
        return HostLock(session.node, process, word == "locked")
    rest = ""
    with contextlib.suppress(TimeoutError, asyncssh.Error, OSError):
        rest = await asyncio.wait_for(process.stdout.read(), session.command_timeout)
    process.close()
    if word != "busy":
        raise HostError(session.node, f"taking the host's lock failed: unexpected {first!r}")
    return Busy(session.node, rest.strip().splitlines()[0] if rest.strip() else "unknown")


async def lock_all(
    sessions: Iterable[Session], interface: str, wait: float, command: str
) -> tuple[dict[str, HostLock], dict[str, HostError]]:
    """Lock every host, all or none, trying for at most ``wait`` seconds; raise
    :class:`OperationError` naming each busy host and who holds it. Hosts whose connection fails
    meanwhile are returned as errors (like unreachable hosts), the others stay locked."""
    todo = list(sessions)
    who = holder(command)
    deadline = time.monotonic() + wait
    pause = BACKOFF_S[0]
    failed: dict[str, HostError] = {}
    while True:
        tries = await asyncio.gather(
            *(_try(s, interface, who) for s in todo), return_exceptions=True
        )
        busy = [t for t in tries if isinstance(t, Busy)]
        held = {t.node: t for t in tries if isinstance(t, HostLock)}
        errors = [t for t in tries if isinstance(t, BaseException)]
        if any(not isinstance(e, HostError) for e in errors):
            for lock in held.values():
                lock.release()
            raise next(e for e in errors if not isinstance(e, HostError))
        for error in errors:
            assert isinstance(error, HostError)
            failed[error.node] = error
        todo = [s for s in todo if s.node not in failed]
        if not busy:
            return held, failed
        for lock in held.values():
            lock.release()
        if time.monotonic() + pause > deadline:
            lines = [f"{b.node}: held by {b.owner}" for b in busy]
            raise OperationError(
                f"another wiremesh run is changing {len(busy)} host(s); waited {wait:g} s, "
                "nothing was changed:\n  " + "\n  ".join(lines),
                "let that run finish (its lock goes when it ends, or when its connection drops), "
                "then run again; --lock-timeout S waits longer",
            )
        await asyncio.sleep(random.uniform(pause / 2, pause))
        pause = min(pause * 2, BACKOFF_S[1])
