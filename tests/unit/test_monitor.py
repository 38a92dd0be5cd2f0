"""Reading the mesh again and again (issue 13): the exporter's and ``status --watch``'s monitor with
readers that stand in for SSH. A slow host never holds a refresh past its wait; its latest data is
served with its age until it is too old, then the host is unreachable (never dropped); one read per
host at a time, at most every interval; a read that hangs is cut off and its connection closed; the
inventory is read again when its file changes."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from tests.unit import mesh_fixture as mf
from wiremesh.errors import ValidationError
from wiremesh.model.health import link_states
from wiremesh.model.host import ObservedHost
from wiremesh.model.inventory import Inventory
from wiremesh.ops.mesh import RunOptions
from wiremesh.ops.monitor import Monitor, Snapshot
from wiremesh.remote.ssh import HostError
from wiremesh.store.inventory_file import InventoryFile

INVENTORY = """version = 1
[mesh]
name = "m"
cidr = "10.0.0.0/24"
""" + "".join(
    f'[[node]]\nname = "{n}"\nendpoint = "198.51.100.{11 + i}"\npublic_key = "{mf.KEYS[i]}"\n'
    for i, n in enumerate(mf.NAMES)
)


class FakeReader:
    """Answers with the fixture's host after ``delay`` seconds (or fails, or hangs)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.delay = 0.0
        self.fail: str | None = None
        self.calls = 0
        self.closed = 0
        self.connects = 0
        self.running = 0
        self.most_running = 0

    async def read(self) -> ObservedHost:
        self.calls += 1
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.connects == self.closed:
                self.connects += 1  # (re)connects after each close, as the SSH reader does
            await asyncio.sleep(self.delay)
            if self.fail:
                raise HostError(self.name, self.fail)
            if self.name == "d":  # readable here: no traffic with anyone yet
                return mf.host("d", [mf.peer("a"), mf.peer("b"), mf.peer("c")])
            seen = mf.observed()[self.name]
            assert isinstance(seen, ObservedHost)
            return seen
        finally:
            self.running -= 1

    def close(self) -> None:
        self.closed += 1


@pytest.fixture
def file(tmp_path: Path) -> InventoryFile:
    path = tmp_path / "wiremesh.toml"
    path.write_text(INVENTORY)
    return InventoryFile(path)


def monitor(file: InventoryFile, **options: float) -> tuple[Monitor, dict[str, FakeReader]]:
    readers: dict[str, FakeReader] = {}

    def make(name: str, _: Inventory) -> FakeReader:
        readers[name] = FakeReader(name)
        return readers[name]

    return Monitor(file, RunOptions(), reader=make, **options), readers  # type: ignore[arg-type]


def test_a_slow_host_does_not_hold_the_refresh(file: InventoryFile) -> None:
    async def run() -> None:
        mon, readers = monitor(file, interval=0, host_timeout=5)
        readers["c"].delay = 2.0
        began = time.monotonic()
        snap = await mon.refresh(wait=0.3)
        assert time.monotonic() - began < 1.0
        reachable = {n.name: n.reachable for n in snap.health.nodes}
        assert reachable == {"a": True, "b": True, "c": False, "d": True}
        c = next(n for n in snap.health.nodes if n.name == "c")
        assert c.error is not None and c.error.startswith("no answer yet")
        assert snap.reads["c"].error is not None
        assert 0.25 < snap.waited_s < 1.0
        # its links are down, not dropped
        assert {p: s for (n, p), s in link_states(snap.health).items() if n == "c"} == {
            "a": "down",
            "b": "down",
            "d": "down",
        }
        await mon.close()
        assert readers["c"].running == 0  # the close cancelled its read

    asyncio.run(run())


def test_latest_data_is_served_with_its_age_until_stale(file: InventoryFile) -> None:
    async def run() -> None:
        mon, readers = monitor(file, interval=0, host_timeout=5, stale_after=0.6)
        await mon.refresh()
        readers["b"].fail = "connection lost"
        await asyncio.sleep(0.3)
        snap = await mon.refresh()
        b = next(n for n in snap.health.nodes if n.name == "b")
        assert b.reachable  # old data, still usable
        assert snap.reads["b"].error == "connection lost"
        assert 0.25 < snap.reads["b"].age_s < 0.6
        await asyncio.sleep(0.4)
        snap = await mon.refresh()
        b = next(n for n in snap.health.nodes if n.name == "b")
        assert not b.reachable and b.error is not None
        assert b.error.startswith("connection lost (last read ")
        assert snap.failures["b"] == 2 and snap.failures["a"] == 0
        readers["b"].fail = None
        snap = await mon.refresh()
        assert all(n.reachable for n in snap.health.nodes)
        assert snap.reads["b"].error is None and snap.reads["b"].age_s < 0.2
        await mon.close()

    asyncio.run(run())


def test_handshake_ages_grow_with_the_age_of_the_data(file: InventoryFile) -> None:
    async def run() -> None:
        clock = [1000.0]
        mon, _ = monitor(file, interval=3600, host_timeout=5, stale_after=600)
        mon.clock = lambda: clock[0]
        snap = await mon.refresh()
        a = next(n for n in snap.health.nodes if n.name == "a")
        assert next(p for p in a.peers if p.name == "b").latest_handshake_age_s == 3
        clock[0] += 200  # no new read (interval): the data is 200 s old
        snap = await mon.refresh()
        a = next(n for n in snap.health.nodes if n.name == "a")
        b = next(p for p in a.peers if p.name == "b")
        assert b.latest_handshake_age_s == 203 and b.link == "idle"  # no longer fresh
        assert snap.reads["a"].age_s == 200
        await mon.close()

    asyncio.run(run())


def test_one_read_per_host_at_a_time_and_at_most_every_interval(file: InventoryFile) -> None:
    async def run() -> None:
        mon, readers = monitor(file, interval=0.5, host_timeout=5)
        readers["a"].delay = 0.3
        await asyncio.gather(*(mon.refresh(wait=0.05) for _ in range(5)))
        await mon.refresh(wait=1)
        assert readers["a"].calls == 1 and readers["a"].most_running == 1
        assert readers["b"].calls == 1  # within the interval: no second read
        await asyncio.sleep(0.5)
        await mon.refresh()
        assert readers["b"].calls == 2 and readers["a"].calls == 2
        assert all(r.connects == 1 for r in readers.values())  # the connection is reused
        await mon.close()

    asyncio.run(run())


def test_a_hanging_read_is_cut_off_and_its_connection_closed(file: InventoryFile) -> None:
    async def run() -> None:
        mon, readers = monitor(file, interval=0, host_timeout=0.2)
        readers["d"].delay = math.inf
        snap = await mon.refresh(wait=5)
        assert snap.waited_s < 1.0
        assert snap.reads["d"].error == "no answer within 0.2 s"
        assert readers["d"].closed == 1 and readers["d"].running == 0
        readers["d"].delay = 0
        snap = await mon.refresh()
        assert snap.reads["d"].error is None and readers["d"].connects == 2  # reconnected
        await mon.close()

    asyncio.run(run())


def test_the_inventory_is_read_again_when_its_file_changes(file: InventoryFile) -> None:
    async def run() -> None:
        mon, readers = monitor(file, interval=0, host_timeout=5)
        await mon.refresh()
        text = file.path.read_text().replace('name = "d"', 'name = "e"')
        file.path.write_text(text)
        snap = await mon.refresh()
        assert [n.name for n in snap.health.nodes] == ["a", "b", "c", "e"]
        assert readers["d"].closed == 1  # the removed node's connection is closed
        file.path.write_text("version = 1\n[mesh]\n")  # broken: the old inventory stays
        snap = await mon.refresh()
        assert [n.name for n in snap.health.nodes] == ["a", "b", "c", "e"]
        assert mon.reload_error is not None and "cidr" in mon.reload_error
        await mon.close()

    asyncio.run(run())


def test_watch_marks_the_links_that_changed_since_the_previous_refresh(file: InventoryFile) -> None:
    from rich.console import Console

    from wiremesh.cli.watch import view
    from wiremesh.model.health import changed_links

    async def run() -> tuple[Snapshot, Snapshot]:
        mon, readers = monitor(file, interval=0, host_timeout=5)
        before = await mon.refresh()
        readers["c"].fail = "connection lost"
        mon.stale_after = 0.05  # c's data will be too old: c is unreachable
        await asyncio.sleep(0.1)
        after = await mon.refresh()
        await mon.close()
        return before, after

    before, after = asyncio.run(run())
    changed = changed_links(before.health, after.health)
    # c's own links went down; the others' links toward c did not change
    assert changed == {("c", "a"): "relayed", ("c", "b"): "direct", ("c", "d"): "idle"}
    assert changed_links(after.health, after.health) == {}
    console = Console(record=True, width=200, force_terminal=False)
    console.print(view(after, changed, 5, "12:00:00"))
    text = console.export_text()
    assert "c  unreachable: connection lost" in text and "◀ changed" in text
    assert "links up:" in text and "3 link(s) changed" in text
    changed = {("a", "b"): "down"}
    console = Console(record=True, width=200, force_terminal=False)
    console.print(view(before, changed, 5, "12:00:00"))
    rows = [line for line in console.export_text().splitlines() if "◀ was down" in line]
    assert len(rows) == 1 and rows[0].lstrip().startswith("b ")


def test_only_the_nodes_asked_for_are_shown(file: InventoryFile) -> None:
    async def run() -> Snapshot:
        readers: dict[str, FakeReader] = {}

        def make(name: str, _: Inventory) -> FakeReader:
            readers[name] = FakeReader(name)
            return readers[name]

        mon = Monitor(file, RunOptions(), reader=make, shown=["a", "c"])
        snap = await mon.refresh()
        await mon.close()
        assert all(r.calls == 1 for r in readers.values())  # every host is read (relays...)
        return snap

    snap = asyncio.run(run())
    assert [n.name for n in snap.health.nodes] == ["a", "c"]
    assert snap.health.links_expected == 6  # toward each of the 3 others
    with pytest.raises(ValidationError, match="no node named 'x'"):
        Monitor(file, RunOptions(), shown=["x"])
