"""``wiremesh exporter``: the mesh's metrics over HTTP for Prometheus, read from the hosts over SSH.

A small HTTP/1.1 server on asyncio streams (the standard library; the exporter needs GET of a few
paths and nothing else, which does not justify a web framework as a dependency). Each request is
answered and the connection closed. ``/metrics`` refreshes the :class:`~wiremesh.ops.monitor.Monitor`
(hosts are read at most every ``interval`` seconds, over one SSH connection each) and waits for
running reads at most ``scrape_timeout`` seconds: a slow host never holds a scrape longer than that
(its latest data is served with its age, or it is exported as unreachable).

There is no authentication and no TLS: listen on loopback, or on an address only Prometheus can
reach. What it serves is not secret (public keys, endpoints, counters), and no private key ever
leaves a host.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from wiremesh.codec.mesh_metrics import mesh_families
from wiremesh.codec.prometheus import CONTENT_TYPE, Family, render
from wiremesh.ops.monitor import Monitor, Snapshot

log = logging.getLogger("wiremesh.exporter")

EXPORTER_FAMILIES: dict[str, tuple[str, str]] = {
    "wiremesh_exporter_scrapes_total": ("counter", "Requests for /metrics served"),
    "wiremesh_exporter_scrape_duration_seconds": (
        "gauge",
        "Seconds this scrape took until its text was made (waiting for hosts included)",
    ),
    "wiremesh_exporter_ssh_connects_total": (
        "counter",
        "SSH connections opened to the node's host (one is kept open and reused; a new one only "
        "after a failure)",
    ),
    "wiremesh_exporter_host_read_failures_total": (
        "counter",
        "Reads of the node's host that failed or timed out",
    ),
}

Route = Callable[[Snapshot], tuple[str, bytes]]
"""An extra path: from the snapshot to (content type, body)."""

REQUEST_TIMEOUT_S = 10.0
MAX_REQUEST_HEAD = 16 * 1024

INDEX = b"""<html><head><title>wiremesh exporter</title></head><body>
<h1>wiremesh exporter</h1><p><a href="/metrics">/metrics</a></p></body></html>
"""


@dataclass
class Exporter:
    """Serves ``/metrics`` (and ``routes``) from a monitor."""

    monitor: Monitor
    scrape_timeout: float = 5.0
    routes: Mapping[str, Route] = field(default_factory=dict)
    scrapes: int = 0
    address: tuple[str, int] | None = None  # where it listens, once it does

    def metrics_text(self, snapshot: Snapshot, started: float) -> str:
        """The exposition text: the mesh's families, then the exporter's own."""
        families = mesh_families(snapshot.metrics_input())
        own = {name: Family(name, kind, text) for name, (kind, text) in EXPORTER_FAMILIES.items()}
        own["wiremesh_exporter_scrapes_total"].add(self.scrapes)
        for node, count in snapshot.connects.items():
            own["wiremesh_exporter_ssh_connects_total"].add(count, {"node": node})
        for node, count in snapshot.failures.items():
            own["wiremesh_exporter_host_read_failures_total"].add(count, {"node": node})
        own["wiremesh_exporter_scrape_duration_seconds"].add(round(time.monotonic() - started, 6))
        return render([*families, *own.values()])

    async def _answer(self, method: str, path: str) -> tuple[int, str, bytes, dict[str, str]]:
        if method not in ("GET", "HEAD"):
            return 405, "text/plain; charset=utf-8", b"only GET\n", {"Allow": "GET, HEAD"}
        if path == "/metrics":
            started = time.monotonic()
            self.scrapes += 1
            snapshot = await self.monitor.refresh(wait=self.scrape_timeout)
            return 200, CONTENT_TYPE, self.metrics_text(snapshot, started).encode(), {}
        if path in self.routes:
            snapshot = await self.monitor.refresh(wait=self.scrape_timeout)
            kind, body = self.routes[path](snapshot)
            return 200, kind, body, {}
        if path == "/":
            return 200, "text/html; charset=utf-8", INDEX, {}
        return 404, "text/plain; charset=utf-8", b"not found: try /metrics\n", {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request, one answer, then the connection is closed."""
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                return
            words = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            extra: dict[str, str] = {}
            if len(words) != 3 or not words[2].startswith("HTTP/1."):
                status, kind, body = 400, "text/plain; charset=utf-8", b"bad request\n"
                method = "GET"
            else:
                method, target = words[0], words[1]
                try:
                    status, kind, body, extra = await self._answer(method, target.split("?", 1)[0])
                except Exception:  # a bug: answer 500 and keep serving
                    log.exception("answering %s failed", target)
                    status, kind, body = 500, "text/plain; charset=utf-8", b"internal error\n"
            reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
            reason[500] = "Internal Server Error"
            lines = [
                f"HTTP/1.1 {status} {reason[status]}",
                f"Content-Type: {kind}",
                f"Content-Length: {len(body)}",
                "Connection: close",
                *(f"{k}: {v}" for k, v in extra.items()),
            ]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            if method != "HEAD":
                writer.write(body)
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the client went away
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def serve(
        self, host: str, port: int, stop: asyncio.Event, ready: Callable[[str], None] | None = None
    ) -> None:
        """Listen on ``host:port`` until ``stop`` is set; then close every connection."""
        server = await asyncio.start_server(
            self.handle, host, port, limit=MAX_REQUEST_HEAD, reuse_address=True
        )
        bound = server.sockets[0].getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        shown = f"[{bound[0]}]" if ":" in str(bound[0]) else str(bound[0])
        warm = asyncio.get_running_loop().create_task(self.monitor.refresh(wait=0))
        try:
            if ready is not None:
                ready(f"http://{shown}:{bound[1]}/metrics")
            async with server:
                await stop.wait()
        finally:
            server.close()
            await server.wait_closed()
            warm.cancel()
            await self.monitor.close()
