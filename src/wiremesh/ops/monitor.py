"""Reading the mesh again and again: ``metrics``, ``status --watch`` and ``exporter``.

A :class:`Monitor` keeps one reader per node. A reader holds one SSH connection to its host, opened
at the first read and reused by every later one; after a failure (a lost connection, no answer in
time) it is closed, and the next read connects again. Each read is the status read of ``status``
(one round trip, read-only).

:meth:`Monitor.refresh` starts a read on every host whose latest read began at least ``interval``
seconds ago and has none running, then waits for the reads running, at most ``wait`` seconds. A host
that is slower than that keeps its read running in the background; the snapshot taken meanwhile
uses that host's latest good data, with its age (its handshake ages are aged by as much), as long as
that data is at most ``stale_after`` seconds old. After that, or when no read ever succeeded, the
host is unreachable in the snapshot, with the reason, and its links are down. No host is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

from wiremesh.codec.mesh_metrics import HostRead, MetricsInput
from wiremesh.errors import WiremeshError
from wiremesh.model.health import MeshHealth
from wiremesh.model.host import ObservedHost
from wiremesh.model.inventory import Inventory
from wiremesh.ops.mesh import RunOptions, select, ssh_options, ssh_target
from wiremesh.ops.status import mesh_status
from wiremesh.remote import hostops
from wiremesh.remote.ssh import HostCommandError, HostError, Session, SshOptions, connect
from wiremesh.store.inventory_file import InventoryFile

log = logging.getLogger("wiremesh.monitor")


class Reader(Protocol):
    """Reads one node's host (the SSH reader, or a fake in tests)."""

    connects: int

    async def read(self) -> ObservedHost:
        """One status read; raises :class:`HostError` when the host cannot be read."""

    def close(self) -> None:
        """Close the connection, if one is open."""


class SshReader:
    """One host over one SSH connection, kept open between reads."""

    def __init__(self, node: str, inventory: Inventory, ssh: SshOptions) -> None:
        self.node = node
        self.target = ssh_target(inventory.node(node))
        self.interface = inventory.mesh.interface
        self.mesh = inventory.mesh.name
        self.ssh = ssh
        self.session: Session | None = None
        self.connects = 0

    async def read(self) -> ObservedHost:
        """Connect if needed, then read; a connection that failed is closed for the next read."""
        if self.session is None:
            self.session = await connect(self.node, self.target, self.ssh)
            self.connects += 1
        try:
            return await hostops.observe(
                self.session, self.interface, self.mesh, (), (), full=False
            )
        except HostCommandError:
            raise  # the command ran and failed: the connection itself is fine
        except (HostError, asyncio.CancelledError):
            self.close()
            raise

    def close(self) -> None:
        """Close the connection."""
        if self.session is not None:
            self.session.close()
            self.session = None


ReaderFactory = Callable[[str, Inventory], Reader]


@dataclass
class HostState:
    """What the monitor knows of one host."""

    reader: Reader
    observed: ObservedHost | None = None
    read_at: float | None = None  # monotonic time the latest good read ended
    duration_s: float | None = None  # how long that read took
    error: str | None = None  # why the latest finished attempt failed (None: it succeeded)
    started_at: float | None = None  # monotonic time the latest attempt began
    task: asyncio.Task[None] | None = None
    failures: int = 0


@dataclass(frozen=True)
class Snapshot:
    """The mesh as the monitor saw it at one moment."""

    health: MeshHealth
    reads: dict[str, HostRead]
    inventory: Inventory
    waited_s: float  # how long this refresh waited for hosts
    connects: dict[str, int] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    def metrics_input(self) -> MetricsInput:
        """What :func:`wiremesh.codec.mesh_metrics.mesh_families` needs."""
        mesh = self.inventory.mesh
        return MetricsInput(self.health, mesh.name, mesh.interface, self.reads, self.waited_s)


class Monitor:
    """Every node's host, read again and again over one connection each (see the module doc)."""

    def __init__(
        self,
        file: InventoryFile,
        options: RunOptions,
        *,
        interval: float = 15.0,
        host_timeout: float = 10.0,
        stale_after: float = 60.0,
        reader: ReaderFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
        shown: list[str] | None = None,
    ) -> None:
        self.file = file
        self.options = options
        self.interval = interval
        self.host_timeout = host_timeout
        self.stale_after = stale_after
        self.clock = clock
        self.inventory = file.load()
        self.shown = shown  # only these nodes in snapshots (every host is read)
        if shown:
            select(self.inventory, shown)  # unknown names: the did-you-mean error, exit code 2
        self._ssh: SshOptions | None = None  # for the current inventory
        self._mtime = self._stat()
        self.reload_error: str | None = None
        self._make = reader or self._ssh_reader
        self._gate = asyncio.Semaphore(max(1, options.parallel))
        self.hosts: dict[str, HostState] = {}
        self._sync_hosts()

    # --- inventory ----------------------------------------------------------------------------

    def _ssh_reader(self, node: str, inventory: Inventory) -> Reader:
        if self._ssh is None:  # once per inventory (the ssh_config is checked each time)
            ssh = ssh_options(self.file, inventory, self.options)
            # A read never waits longer than host_timeout, connecting included.
            self._ssh = replace(
                ssh,
                connect_timeout=min(ssh.connect_timeout, self.host_timeout),
                command_timeout=min(ssh.command_timeout, self.host_timeout),
            )
        return SshReader(node, inventory, self._ssh)

    def _stat(self) -> int | None:
        try:
            return self.file.path.stat().st_mtime_ns
        except OSError:
            return None

    def _sync_hosts(self) -> None:
        names = [n.name for n in self.inventory]
        for name in list(self.hosts):
            if name not in names:
                self._drop(name)
        for name in names:
            if name not in self.hosts:
                self.hosts[name] = HostState(self._make(name, self.inventory))

    def _drop(self, name: str) -> None:
        state = self.hosts.pop(name)
        if state.task is not None:
            state.task.cancel()
        state.reader.close()

    def _reload(self) -> None:
        """Read the inventory again when its file changed (a bad file keeps the old inventory)."""
        mtime = self._stat()
        if mtime == self._mtime:
            return
        self._mtime = mtime
        try:
            inventory = self.file.load()
            ssh_options(self.file, inventory, self.options)  # its ssh_config must still pass
        except WiremeshError as exc:
            self.reload_error = exc.message
            log.warning("inventory not reloaded: %s", exc.message)
            return
        self.reload_error = None
        changed = {
            n.name
            for n in inventory
            if (old := self.inventory.find(n.name)) is None
            or ssh_target(old) != ssh_target(n)
            or inventory.mesh != self.inventory.mesh
        }
        for name in changed & set(self.hosts):
            self._drop(name)  # reconnect with the new settings
        self.inventory = inventory
        self._ssh = None
        self._sync_hosts()

    # --- reading ------------------------------------------------------------------------------

    async def _read(self, name: str, state: HostState) -> None:
        started = self.clock()
        try:
            async with self._gate:
                observed = await asyncio.wait_for(state.reader.read(), self.host_timeout)
        except TimeoutError:
            state.reader.close()
            state.error = f"no answer within {self.host_timeout:g} s"
        except HostError as exc:
            state.error = exc.reason
        except WiremeshError as exc:  # a bad ssh_config path, an unparsable answer...
            state.error = exc.message
        except Exception as exc:  # a bug: the host is reported unreadable, the monitor goes on
            log.exception("%s: reading failed", name)
            state.error = f"unexpected {type(exc).__name__}: {exc}"
        else:
            state.observed = observed
            state.read_at = self.clock()
            state.duration_s = state.read_at - started
            state.error = None
            return
        state.failures += 1
        log.info("%s: %s", name, state.error)

    def _start(self, now: float) -> None:
        for name, state in self.hosts.items():
            if state.task is not None and not state.task.done():
                continue
            if state.started_at is not None and now - state.started_at < self.interval:
                continue
            state.started_at = now
            state.task = asyncio.get_running_loop().create_task(self._read(name, state))

    async def refresh(self, wait: float | None = None) -> Snapshot:
        """Start the reads that are due, wait for running ones at most ``wait`` seconds (default:
        ``host_timeout``), and take a snapshot."""
        self._reload()
        began = self.clock()
        self._start(began)
        running = [s.task for s in self.hosts.values() if s.task is not None and not s.task.done()]
        limit = self.host_timeout if wait is None else wait
        if running and limit > 0:
            await asyncio.wait(running, timeout=None if math.isinf(limit) else limit)
        return self.snapshot(self.clock() - began)

    def snapshot(self, waited: float = 0.0) -> Snapshot:
        """The mesh from what is known now (pure: no host is read)."""
        now = self.clock()
        observed: dict[str, ObservedHost | HostError] = {}
        reads: dict[str, HostRead] = {}
        for name, state in self.hosts.items():
            age = now - state.read_at if state.read_at is not None else None
            error = state.error
            if error is None and state.observed is None:
                running = now - state.started_at if state.started_at is not None else 0.0
                error = f"no answer yet (reading for {running:.0f} s)"
            usable = state.observed is not None and age is not None and age <= self.stale_after
            if usable and state.observed is not None and age is not None:
                # Handshake ages count from the host's clock at the read: age them with the data.
                observed[name] = replace(state.observed, now=state.observed.now + round(age))
            else:
                reason = error or "no data"
                if state.observed is not None and age is not None:
                    reason += f" (last read {age:.0f} s ago)"
                observed[name] = HostError(name, reason)
            reads[name] = HostRead(state.duration_s, round(age or 0.0, 3), error)
        shown = [n for n in self.shown if self.inventory.find(n)] if self.shown else None
        health = mesh_status(self.inventory, observed, None, shown)
        return Snapshot(
            health,
            reads,
            self.inventory,
            waited,
            {n: s.reader.connects for n, s in self.hosts.items()},
            {n: s.failures for n, s in self.hosts.items()},
        )

    async def close(self) -> None:
        """Stop running reads and close every connection."""
        tasks = [s.task for s in self.hosts.values() if s.task is not None and not s.task.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for state in self.hosts.values():
            state.reader.close()


def read_once(file: InventoryFile, options: RunOptions, host_timeout: float) -> Snapshot:
    """Read every host once (``wiremesh metrics``): one connection each, closed afterwards."""

    async def run() -> Snapshot:
        monitor = Monitor(file, options, interval=0.0, host_timeout=host_timeout)
        try:
            return await monitor.refresh(wait=math.inf)
        finally:
            await monitor.close()

    return asyncio.run(run())
