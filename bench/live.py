"""Benchmark: packets lost by live changes, wiremesh's ``wg set`` steps against two references (root).

Run from the repository root, as root, with the project's venv::

    .venv/bin/python bench/live.py                 # 10 changes of each kind, 2 ms pings
    .venv/bin/python bench/live.py --changes 20 --interval 0.001 --json live.json

One lab: public hosts lab1..lab6 (lab6 joins and leaves) and two hosts behind two NAT routers (lab7,
lab8; lab1 is their relay). A healthy pair, lab1 → lab2, is pinged every ``--interval`` seconds,
packet by packet (``wiremesh.lab.pingprobe``), while changes are applied one at a time with
wiremesh's own apply (``wiremesh.ops.converge.apply``, what ``wiremesh apply --yes`` runs):

* add node / remove node: ``node add lab6`` / ``node rm lab6``, alternately;
* endpoint: lab3's endpoint between its two underlay addresses (198.51.100.13 and .113);
* allowed IPs: lab3 routes 172.16.3.0/24, then not;
* listen port: lab3 listens on 51830, then 51820;
* MTU: the mesh MTU 1400, then 1420 (every host, the pinged pair included);
* relay → direct (and back): the NAT pair's routes move between the relay's peer entry and each
  other's (the pair itself is pinged, lab7 → lab8, through the NAT routers). The direct path is real
  (punched through both NATs before measuring); the bench flips which path the planner uses
  (``Facts.direct``) and carries out the resulting plans with wiremesh's executor.

Each change's loss is the number of sequence numbers sent during its apply (from just before the
apply to 0.3 s after) that never got a reply. For the path moves, the NAT pair's own ping (lab7 → lab8)
is counted too, in the rows marked "(pair)": a move between relay and direct path changes which peer
each end accepts the other's packets from, so packets in flight on the old path at the instant both
ends switch can be lost (see ``wiremesh.model.live``); the exit code judges the healthy pair only.

The same changes run three times, each with another way of changing a running interface
(``RunOptions.live_method``): ``wg-set`` (wiremesh), ``syncconf`` (the new config loaded with
``wg syncconf``, as wiremesh did before and other tools do) and ``restart`` (``wg-quick down &&
wg-quick up``). Only the method differs: same plans, same files.

Exit code: 0 when every wiremesh change lost nothing, 1 otherwise, 2 when the lab did not work.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from wiremesh.cli.main import main as wiremesh
from wiremesh.lab import Lab
from wiremesh.lab.pingprobe import PingProbe
from wiremesh.ops.converge import apply, execute_plan
from wiremesh.ops.mesh import RunOptions
from wiremesh.ops.planning import mesh_plan, observe_mesh
from wiremesh.remote.live import METHODS
from wiremesh.remote.ssh import Sessions
from wiremesh.store.inventory_file import InventoryFile

FIRST, SECOND = "198.51.100.13", "198.51.100.113"  # lab3's two underlay addresses
PAIR = " (pair)"
KINDS = (
    "add node",
    "remove node",
    "endpoint",
    "allowed IPs",
    "listen port",
    "MTU",
    "relay → direct",
    "direct → relay",
    "relay → direct" + PAIR,
    "direct → relay" + PAIR,
)


@dataclass
class Tally:
    """Packets sent and lost during the applies of one kind of change."""

    changes: int = 0
    sent: int = 0
    lost: list[int] = field(default_factory=list)


def run_cli(inventory: Path, *args: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = wiremesh(["-f", str(inventory), *args], env={}, stdout=out, stderr=err)
    if code != 0:
        raise SystemExit(
            f"wiremesh {' '.join(args)} failed ({code}): {out.getvalue()}{err.getvalue()}"
        )


def apply_with(file: InventoryFile, method: str) -> None:
    report = apply(file, [], RunOptions(live_method=method), confirm=lambda _plan: True)
    if report.failed:
        raise SystemExit(f"apply ({method}) failed: {[h.error for h in report.failed]}")


def force_path(file: InventoryFile, pair: frozenset[str], direct: bool, method: str) -> None:
    """Plan the mesh with the NAT pair's path forced (direct or relayed) and carry it out."""

    async def run() -> None:
        options = RunOptions(live_method=method)
        async with Sessions() as sessions:
            ctx = await observe_mesh(file, [], options, sessions)
            ctx.facts = replace(ctx.facts, direct=frozenset({pair}) if direct else frozenset())
            plan = mesh_plan(ctx)
            results = await execute_plan(ctx, plan, sessions, options, "bench")
            failed = [h.error for h in results if h.failed]
            if failed:
                raise SystemExit(f"forced path ({method}) failed: {failed}")

    asyncio.run(run())


def measure(probes: list[tuple[PingProbe, Tally]], change: Callable[[], None]) -> None:
    """Carry out ``change``; count what each probe sent and lost from just before it to 0.3 s after."""
    firsts = [probe.mark() + 1 for probe, _ in probes]
    change()
    time.sleep(0.3)
    for (probe, tally), first in zip(probes, firsts, strict=True):
        count = probe.count(first, probe.mark())
        tally.changes += 1
        tally.sent += count.sent
        tally.lost += list(count.lost)


def direct_now(inventory: Path, a: str, b: str) -> bool:
    out, err = io.StringIO(), io.StringIO()
    wiremesh(["-f", str(inventory), "status", "--json"], env={}, stdout=out, stderr=err)
    report = json.loads(out.getvalue())
    links = {(n["name"], p["name"]): p for n in report["nodes"] for p in n["peers"]}
    return bool(links[(a, b)]["link"] == "direct" and links[(b, a)]["link"] == "direct")


def run_method(
    lab: Lab, method: str, changes: int, interval: float, pair: tuple[str, str]
) -> dict[str, Tally]:
    """Every kind of change ``changes`` times with ``method``; a new probe per kind (icmp_seq is 16
    bits: one probe would wrap)."""
    inventory = lab.inventory_path
    file = InventoryFile(inventory)
    tallies = {k: Tally() for k in KINDS}
    nodes = json.loads(_out(inventory, "node", "ls", "--json"))["nodes"]
    address = {n["name"]: n["address"] for n in nodes}
    add = ["node", "add", "lab6", "--endpoint", "198.51.100.16", "--ssh", "root@lab6"]
    lab3 = ["node", "set", "lab3"]
    toggles = [
        (("add node", add), ("remove node", ["node", "rm", "lab6"])),
        (("endpoint", [*lab3, "--endpoint", SECOND]), ("endpoint", [*lab3, "--endpoint", FIRST])),
        (
            ("allowed IPs", [*lab3, "--allowed-ip", "172.16.3.0/24"]),
            ("allowed IPs", [*lab3, "--clear", "allowed_ips"]),
        ),
        (
            ("listen port", [*lab3, "--listen-port", "51830"]),
            ("listen port", [*lab3, "--clear", "listen_port"]),
        ),
        (("MTU", ["mesh", "set", "--mtu", "1400"]), ("MTU", ["mesh", "set", "--mtu", "1420"])),
    ]
    for on, off in toggles:
        probe = PingProbe(lab, "lab1", address["lab2"], interval).start()
        try:
            for _ in range(changes):
                for kind, args in (on, off):
                    run_cli(inventory, *args)
                    measure([(probe, tallies[kind])], lambda: apply_with(file, method))
        finally:
            probe.stop()
    a, b = pair
    healthy = PingProbe(lab, "lab1", address["lab2"], interval).start()
    own = PingProbe(lab, a, address[b], interval).start()
    try:
        for _ in range(changes):
            for direct, kind in ((False, "direct → relay"), (True, "relay → direct")):
                measure(
                    [(healthy, tallies[kind]), (own, tallies[kind + PAIR])],
                    lambda d=direct: force_path(file, frozenset(pair), d, method),  # type: ignore[misc]
                )
    finally:
        own.stop()
        healthy.stop()
    return tallies


def _out(inventory: Path, *args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    wiremesh(["-f", str(inventory), *args], env={}, stdout=out, stderr=err)
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=10, help="changes of each kind (default 10)")
    parser.add_argument("--interval", type=float, default=0.002, help="ping interval (s)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/wiremesh-bench-live"))
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))  # take the lab down on SIGTERM too
    lab = Lab.up(args.dir, 6, nats={"a": 1, "b": 1}, wait=600)
    try:
        inventory = lab.inventory_path
        run_cli(inventory, "node", "rm", "lab6", "--forget")
        lab.exec("lab3", ["ip", "address", "add", f"{SECOND}/24", "dev", "eth0"])
        file = InventoryFile(inventory)
        apply_with(file, "wg-set")
        pair = ("lab7", "lab8")
        for _ in range(15):  # punch the direct path through both NATs (5 s handshake retries)
            if direct_now(inventory, *pair):
                break
            time.sleep(2)
            apply_with(file, "wg-set")
        else:
            print("the NAT pair never got a direct path", file=sys.stderr)
            return 2
        results = {m: run_method(lab, m, args.changes, args.interval, pair) for m in args.methods}
        force_path(file, frozenset(pair), True, "wg-set")
    finally:
        lab.down()
    print(
        f"live changes, {args.changes} of each kind, ping every {args.interval * 1000:g} ms from "
        f"lab1 to lab2; rows marked{PAIR}: from lab7 to lab8, the NAT pair whose path moves "
        f"({time.monotonic() - started:.0f} s)"
    )
    print(f"{'change':<22}" + "".join(f"{m + ' sent/lost':>20}" for m in args.methods))
    for kind in KINDS:
        cells = [f"{results[m][kind].sent}/{len(results[m][kind].lost)}" for m in args.methods]
        print(f"{kind:<22}" + "".join(f"{c:>20}" for c in cells))
    if args.json:
        data = {
            m: {
                k: {"changes": t.changes, "sent": t.sent, "lost": len(t.lost)} for k, t in r.items()
            }
            for m, r in results.items()
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    ours = {k: t for k, t in results.get("wg-set", {}).items() if not k.endswith(PAIR)}
    return 0 if all(not t.lost for t in ours.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
