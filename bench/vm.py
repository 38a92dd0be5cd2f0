"""Benchmark: lab VMs (issue 11): image build, boot to ssh, memory per VM, reboot to the first ping.

Run from the repository root, as root, with the project's venv::

    .venv/bin/python bench/vm.py                  # everything (about 6 minutes here)
    .venv/bin/python bench/vm.py --no-cold-build --json

What it measures:

* image build, cold: ``wiremesh.lab.image.build`` into a fresh, temporary cache directory (the shared
  cache in /var/cache/wiremesh/images is left alone): mmdebstrap (downloading every package from the
  machine's apt sources, installing them, the initramfs), ``mkfs.ext4 -d``; the temporary cache is
  removed afterwards. Cached: ``image.ensure()`` when the image is in the cache (what every later
  ``lab up --vms`` pays), and ``wiremesh lab image build`` as a command (with the CLI's start-up).
* boot to ssh: ``Lab.up(DIR, vms=K)`` for K = 1 and 3, wall clock, and per VM the time from QEMU's
  start until its sshd sends a banner (the lab's own progress reports). For 3 VMs both with the
  lab's default of at most 2 booting at once and with all 3 started together.
* memory per VM: ``Pss`` and ``Rss`` of each QEMU process (/proc/PID/smaps_rollup) with the VMs up,
  idle, after a mesh was applied; and the guest's own view (``free``).
* reboot to ping: in a 3-VM mesh applied with ``wiremesh apply``, ``systemctl reboot`` on one VM, then
  the seconds until another VM's ping over the mesh (1 s timeout, back to back) is answered again
  after the VM went down, and until ``plan`` is empty. No wiremesh command runs in between.

Each lab is taken down afterwards, also on failure.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import smaps
from wiremesh.cli.main import main
from wiremesh.lab import Lab, image, vm

REPO = Path(__file__).resolve().parents[1]


def wm(lab: Lab, *args: str) -> int:
    """``wiremesh -f <lab inventory> ARGS``, quietly; returns the exit code."""
    import io

    return main(
        ["-f", str(lab.inventory_path), *args], env={}, stdout=io.StringIO(), stderr=io.StringIO()
    )


def timed_up(directory: Path, vms: int) -> tuple[Lab, float, dict[str, float]]:
    """``Lab.up`` with ``vms`` VMs: the lab, its wall time and each VM's seconds to ssh."""
    boots: dict[str, float] = {}

    def progress(phase: str, done: int, total: int) -> None:
        found = re.match(r"booting VMs: (\S+) answers after ([\d.]+) s", phase)
        if found:
            boots[found.group(1)] = float(found.group(2))

    started = time.monotonic()
    lab = Lab.up(directory, vms=vms, wait=300, progress=progress)
    return lab, time.monotonic() - started, boots


def bench_build(results: dict[str, Any]) -> None:
    """Image build, cold (into a temporary cache) and cached."""
    with tempfile.TemporaryDirectory(prefix="wm-bench-image-", dir="/var/tmp") as tmp:
        cache = Path(tmp)
        started = time.monotonic()
        built = image.build(cache=cache, force=True)
        cold = time.monotonic() - started
        started = time.monotonic()
        image.ensure(cache=cache)
        cached = time.monotonic() - started
        results["build"] = {
            "cold_s": round(cold, 1),
            "cached_ensure_s": round(cached, 4),
            "disk_mib": round(built.disk_bytes / 2**20),
            "kernel": built.manifest.get("kernel"),
        }
        print(
            f"image build: cold {cold:.1f} s, cached {cached * 1000:.1f} ms, "
            f"{built.disk_bytes / 2**20:.0f} MiB on disk"
        )


def bench_cached_command(results: dict[str, Any]) -> None:
    """``wiremesh lab image build`` with the image cached (start-up included)."""
    image.ensure()
    started = time.monotonic()
    subprocess.run(
        [str(REPO / ".venv/bin/wiremesh"), "lab", "image", "build"], check=True, capture_output=True
    )
    results.setdefault("build", {})["cached_command_s"] = round(time.monotonic() - started, 2)
    print(f"`wiremesh lab image build`, cached: {results['build']['cached_command_s']:.2f} s")


def bench_boot(results: dict[str, Any], work: Path) -> None:
    """Boot to ssh for 1 and 3 VMs; memory per VM; reboot to the first ping over the mesh."""
    image.ensure()
    lab, wall, boots = timed_up(work / "one", 1)
    try:
        results["boot_1"] = {"up_s": round(wall, 1), "vm_s": boots}
        print(f"1 VM: lab up {wall:.1f} s, boot to ssh {boots}")
    finally:
        lab.down()

    saved = vm.MAX_BOOTING
    try:
        vm.MAX_BOOTING = 3
        lab, wall, boots = timed_up(work / "three-at-once", 3)
        lab.down()  # (on a failure, Lab.up removed what it made)
        results["boot_3_together"] = {"up_s": round(wall, 1), "vm_s": boots}
        print(f"3 VMs started together: lab up {wall:.1f} s, boot to ssh {boots}")
    finally:
        vm.MAX_BOOTING = saved

    lab, wall, boots = timed_up(work / "three", 3)
    try:
        results["boot_3"] = {"up_s": round(wall, 1), "vm_s": boots, "max_booting": saved}
        print(f"3 VMs, at most {saved} booting: lab up {wall:.1f} s, boot to ssh {boots}")
        bench_mesh(results, lab)
    finally:
        lab.down()


def bench_mesh(results: dict[str, Any], lab: Lab) -> None:
    """Memory per VM with a mesh up, then reboot of one VM to the first ping over the mesh."""
    assert wm(lab, "apply", "--yes") == 0
    assert wm(lab, "status", "--ping") == 0
    time.sleep(10)  # idle
    memory = {h.name: smaps(h.pid) for h in lab.vms}
    guest = lab.exec("lab1", ["free", "-m"]).stdout.splitlines()[1].split()
    pss = [p for p, _ in memory.values()]
    rss = [r for _, r in memory.values()]
    results["memory"] = {
        "pss_mib": [round(p / 1024) for p in pss],
        "rss_mib": [round(r / 1024) for r in rss],
        "guest_ram_mib": lab.spec.vm_memory,
        "guest_used_mib": int(guest[2]),
    }
    print(
        f"memory per VM: PSS {statistics.median(pss) / 1024:.0f} MiB, RSS "
        f"{statistics.median(rss) / 1024:.0f} MiB (guest RAM {lab.spec.vm_memory} MiB, "
        f"{guest[2]} MiB used inside)"
    )

    address = "10.77.0.2"  # lab2's overlay address
    started = time.monotonic()
    before = lab.reboot("lab2")
    went_down = ping_back = None
    while ping_back is None:
        ok = (
            lab.exec("lab1", ["ping", "-n", "-c", "1", "-W", "1", address], check=False).returncode
            == 0
        )
        now = time.monotonic() - started
        if not ok and went_down is None:
            went_down = now
        if ok and went_down is not None:
            ping_back = now
        if now > 300:
            raise RuntimeError("lab2 did not come back within 300 s")
    lab.wait_booted("lab2", before)  # it really rebooted
    empty = wm(lab, "plan") == 0
    uptime = float(lab.exec("lab2", ["cut", "-d", " ", "-f1", "/proc/uptime"]).stdout)
    results["reboot"] = {
        "down_after_s": round(went_down or 0, 1),
        "first_ping_s": round(ping_back, 1),
        "guest_uptime_at_check_s": round(uptime, 1),
        "plan_empty": empty,
    }
    print(
        f"reboot of lab2: down after {went_down:.1f} s, first ping over the mesh after "
        f"{ping_back:.1f} s; next plan empty: {empty}"
    )


def main_(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--no-cold-build", action="store_true", help="skip the cold image build")
    parser.add_argument("--json", action="store_true", help="print the results as JSON at the end")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {}
    if not args.no_cold_build:
        bench_build(results)
    bench_cached_command(results)
    work = Path(tempfile.mkdtemp(prefix="wm-bench-vm-"))
    try:
        bench_boot(results, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main_(sys.argv[1:]))
