"""Benchmark: ``wiremesh lab`` creation and teardown time, and memory per lab host (root only).

Run from the repository root, as root, with the project's venv::

    .venv/bin/python bench/lab.py                 # 10 and 50 hosts, best of 3
    .venv/bin/python bench/lab.py --sizes 50 --repeat 1 --json

What it measures, for each N:

* up: wall-clock time of ``Lab.up(DIR, N)`` in this process, i.e. everything ``wiremesh lab up`` does
  after argument parsing: prerequisite checks, sysctls, bridge + N netns + N veth pairs (one
  ``ip -batch``), N host keys and host directories, N hosts started (nsenter/unshare/init, mounts,
  sshd), waiting until every sshd listens, ``ssh-keyscan`` of all hosts, known_hosts, ssh_config and
  the inventory. The phases' durations of the last run are printed too.
* down: wall-clock time of ``Lab.down()``: SIGKILL to every host's PID 1 and a check that every
  process is gone, veths, namespaces and bridge deleted and checked, sysctls restored, files removed.
* memory per host, measured two ways on each run (medians are printed), with the lab up and idle:
  - PSS: the sum of ``Pss`` (/proc/PID/smaps_rollup) over every process the lab runs (each host's
    ``unshare`` launcher and every process inside its network namespace: PID 1 shell, sleep, sshd),
    divided by N. PSS splits shared pages (libc, the sshd binary) fairly between processes, so the
    sum is the real user-space cost. RSS summed the same way is printed as an upper bound (it counts
    shared pages once per process).
  - MemAvailable: the drop of ``MemAvailable`` in /proc/meminfo from before ``up`` to after it
    (after a 1 s settle), divided by N. This also counts kernel memory (namespaces, veths, tmpfs,
    page cache of the files written); it is noisy, since anything else running on the machine moves it.
* checks at each N: the real OpenSSH client connects to every host with the generated ssh_config and
  strict host key checking (``ssh -F DIR/ssh_config labI hostname``, all in parallel, each must
  print its own name), and lab1 pings every other host over the underlay.

Targets (issue 3): up under 10 s for 50 hosts, under 15 MiB per host.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchlib import smaps
from wiremesh.lab import Lab, procs

TARGET_UP_50 = 10.0
TARGET_MIB_PER_HOST = 15.0


def meminfo(key: str) -> int:
    """A /proc/meminfo value in KiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def lab_pids(lab: Lab) -> list[int]:
    """Every process of the lab: launchers and everything in the hosts' network namespaces."""
    pids: set[int] = set()
    for h in lab.hosts:
        if h.netns is None:  # a VM (bench/vm.py measures those)
            continue
        pids.update(procs.pids_in_netns(Path("/run/netns") / h.netns))
        parent = int(Path(f"/proc/{h.pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        pids.add(parent)  # the host's `unshare`, in the root network namespace
    return sorted(pids)


def check_ssh_all(lab: Lab) -> float:
    """ssh to every host at once; each must answer with its name. Returns the wall time."""

    def one(name: str) -> tuple[str, subprocess.CompletedProcess[str]]:
        return name, subprocess.run(
            lab.ssh_argv(name, ["hostname"]),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(lab.hosts)) as pool:
        results = list(pool.map(one, [h.name for h in lab.hosts]))
    elapsed = time.monotonic() - started
    bad = [(n, r.stderr.strip()) for n, r in results if r.stdout.strip() != n]
    if bad:
        raise SystemExit(f"ssh failed on {len(bad)} hosts: {bad[:3]}")
    return elapsed


def check_underlay(lab: Lab) -> None:
    """lab1 pings every other lab host once over the underlay."""
    targets = " ".join(str(h.underlay_ip) for h in lab.hosts[1:])
    if not targets:
        return
    script = f"for t in {targets}; do ping -c 1 -W 2 $t >/dev/null || echo $t; done"
    failed = lab.exec("lab1", ["sh", "-c", script], timeout=120).stdout.split()
    if failed:
        raise SystemExit(f"lab1 cannot ping {failed}")


def run_size(n: int, repeat: int, base: Path) -> dict[str, Any]:
    """Measure ``repeat`` up/down cycles of ``n`` hosts; memory on each, checks on the last one."""
    ups, downs, pss, rss, avail = [], [], [], [], []
    result: dict[str, Any] = {"hosts": n}
    for i in range(repeat):
        directory = base / f"lab-{n}-{i}"
        phases: list[tuple[str, float]] = []

        def progress(
            phase: str, done: int, total: int, phases: list[tuple[str, float]] = phases
        ) -> None:
            if not phases or phases[-1][0] != phase:
                phases.append((phase, time.monotonic()))

        time.sleep(1)
        avail_before = meminfo("MemAvailable")
        started = time.monotonic()
        lab = Lab.up(directory, n, progress=progress, wait=600)
        ups.append(time.monotonic() - started)
        try:
            time.sleep(1)
            avail.append((avail_before - meminfo("MemAvailable")) / 1024 / n)
            pids = lab_pids(lab)
            sizes = [smaps(pid) for pid in pids]
            pss.append(sum(p for p, _ in sizes) / 1024 / n)
            rss.append(sum(r for _, r in sizes) / 1024 / n)
            result["processes"] = len(pids)
            if i == repeat - 1:
                result["ssh_all_s"] = check_ssh_all(lab)
                check_underlay(lab)
                marks = [*phases, ("end", started + ups[-1])]
                result["phases_s"] = {
                    name: round(marks[k + 1][1] - t, 3) for k, (name, t) in enumerate(marks[:-1])
                }
        finally:
            started = time.monotonic()
            lab.down()
            downs.append(time.monotonic() - started)
    result["up_s"] = {"best": min(ups), "median": statistics.median(ups), "all": ups}
    result["down_s"] = {"best": min(downs), "median": statistics.median(downs), "all": downs}
    result["pss_mib_per_host"] = statistics.median(pss)
    result["rss_mib_per_host"] = statistics.median(rss)
    result["memavailable_mib_per_host"] = statistics.median(avail)
    return result


def main() -> int:
    """Run the benchmark and print a summary (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,50", help="comma-separated host counts")
    parser.add_argument("--repeat", type=int, default=3, help="up/down cycles per size")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/lab.py needs root", file=sys.stderr)
        return 2
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="wiremesh-bench-lab-") as tmp:
        results = [run_size(n, args.repeat, Path(tmp)) for n in sizes]
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        gib = meminfo("MemTotal") / 1024 / 1024
        print(f"wiremesh lab: {os.cpu_count()} CPUs, {gib:.1f} GiB, best/median of {args.repeat}")
        print(
            f"{'hosts':>5}  {'up s':>12}  {'down s':>12}  {'PSS MiB/host':>12}  "
            f"{'RSS MiB/host':>12}  {'MemAvail MiB/host':>17}  {'ssh all s':>9}"
        )
        for r in results:
            print(
                f"{r['hosts']:>5}  {r['up_s']['best']:>5.2f}/{r['up_s']['median']:<6.2f}"
                f"  {r['down_s']['best']:>5.2f}/{r['down_s']['median']:<6.2f}"
                f"  {r['pss_mib_per_host']:>12.2f}  {r['rss_mib_per_host']:>12.2f}"
                f"  {r['memavailable_mib_per_host']:>17.2f}  {r['ssh_all_s']:>9.2f}"
            )
        last = results[-1]
        print(f"phases of the last {last['hosts']}-host up (s): {last['phases_s']}")
    failed = []
    for r in results:
        if r["hosts"] == 50 and r["up_s"]["median"] >= TARGET_UP_50:
            failed.append(f"up of 50 hosts took {r['up_s']['median']:.1f} s (target < 10 s)")
        if r["pss_mib_per_host"] >= TARGET_MIB_PER_HOST:
            failed.append(f"{r['pss_mib_per_host']:.1f} MiB per host (target < 15 MiB)")
    for f in failed:
        print(f"TARGET MISSED: {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
