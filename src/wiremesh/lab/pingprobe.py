"""A continuous ping between two lab hosts, counted packet by packet (for loss tests and benchmarks).

``ping -i 0.002`` runs inside the source host; every reply line is read with its ``icmp_seq``, so a
loss is a sequence number that never got a reply, not a difference of totals. When the probe stops
(SIGINT to that ping, by its PID inside the host), the packets sent in the last
:data:`TAIL_S` seconds may still be in flight: they are not counted either way. Callers stop the
probe only after that long without changes.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from dataclasses import dataclass, field

from wiremesh.errors import OperationError
from wiremesh.lab.lab import Lab

TAIL_S = 0.2
"""Packets sent this long before the stop are in flight, not lost (RTT in the lab is ~0.5 ms)."""

_REPLY = re.compile(r"icmp_seq=(\d+)")
_SENT = re.compile(r"^(\d+) packets transmitted")
_PIDFILE = "/tmp/wiremesh-pingprobe.pid"


@dataclass(frozen=True)
class PingCount:
    """Packets sent and the sequence numbers that got no reply."""

    sent: int
    lost: tuple[int, ...]

    @property
    def received(self) -> int:
        """Packets answered."""
        return self.sent - len(self.lost)


@dataclass
class PingProbe:
    """Pings ``address`` from lab host ``source`` every ``interval`` seconds until :meth:`stop`."""

    lab: Lab
    source: str
    address: str
    interval: float = 0.002
    _proc: subprocess.Popen[str] | None = field(default=None, repr=False)
    _replies: set[int] = field(default_factory=set, repr=False)
    _times: dict[int, float] = field(default_factory=dict, repr=False)
    _reader: threading.Thread | None = field(default=None, repr=False)
    _sent: int | None = None

    def start(self) -> PingProbe:
        """Start pinging; returns once the first reply came back (the path works)."""
        script = f"echo $$ > {_PIDFILE}; exec ping -n -i {self.interval} -W 2 {self.address}"
        argv = self.lab.exec_argv(self.source, ["sh", "-c", script])
        self._proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 10
        while not self._replies:
            if time.monotonic() > deadline or self._proc.poll() is not None:
                self._kill()
                raise OperationError(f"{self.source}: no ping reply from {self.address} in 10 s")
            time.sleep(0.01)
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            match = _REPLY.search(line)
            if match and "bytes from" in line:
                self._replies.add(int(match.group(1)))
            sent = _SENT.match(line)
            if sent:
                self._sent = int(sent.group(1))

    def mark(self) -> int:
        """The highest sequence number answered so far (to count per phase)."""
        return max(self._replies, default=0)

    def _kill(self) -> None:
        self.lab.exec(self.source, ["sh", "-c", f"kill -INT $(cat {_PIDFILE})"], check=False)
        if self._proc is not None:
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def stop(self) -> PingCount:
        """Stop pinging; the count leaves out the packets of the last :data:`TAIL_S` seconds (in
        flight), judged by the number ping itself says it sent."""
        self._kill()
        if self._reader is not None:
            self._reader.join(timeout=10)
        if self._sent is None:
            raise OperationError(f"{self.source}: ping printed no summary")
        if self._sent > 65535:  # icmp_seq is 16 bits: past that, sequence numbers repeat
            raise OperationError("a ping probe must not run past 65535 packets; stop it sooner")
        judged = max(0, self._sent - round(TAIL_S / self.interval))
        lost = tuple(s for s in range(1, judged + 1) if s not in self._replies)
        return PingCount(judged, lost)

    def count(self, first: int, last: int) -> PingCount:
        """Sent and lost among sequence numbers ``first..last`` (from :meth:`mark`)."""
        lost = tuple(s for s in range(first, last + 1) if s not in self._replies)
        return PingCount(max(0, last - first + 1), lost)
