"""Benchmark: ``wiremesh exporter`` on lab hosts under load (issue 13, item 3; root only).

Run from the repository root, as root, with the project's venv::

    .venv/bin/python bench/exporter.py                       # 30 hosts, scraped every 1 s for 60 s
    .venv/bin/python bench/exporter.py --repeat 3 --json exporter.json

What one round does:

1. ``Lab.up(DIR, N, wait=600)`` (``wiremesh lab up --hosts N``), then untimed: ``apply --yes`` and
   ``status --ping --json`` (which must be healthy: every link fresh).
2. Starts ``.venv/bin/wiremesh -f DIR/wiremesh.toml exporter --listen 127.0.0.1:PORT --interval I``
   (default ``--interval 1``: the hosts are read again for every scrape, the heaviest setting), and
   waits until a scrape says every host is reachable (the connections are open).
3. Scrapes ``/metrics`` every second for ``--seconds`` (a fixed schedule: a slow scrape does not
   push the next one back), each on a new TCP connection as Prometheus does after the exporter's
   ``Connection: close``; times each request from connect to the last byte, and checks each answer
   (HTTP 200, every host reachable, N*(N-1) links, none down).
4. Memory of the exporter process, sampled every second: RSS and PSS (``/proc/PID/smaps_rollup``),
   peak RSS (``VmHWM``); its CPU time (``/proc/PID/stat``).
5. Connections: the exporter's own count (``wiremesh_exporter_ssh_connects_total`` per host, which
   must be 1 for every host at the end), and on every lab host, halfway and at the end, the
   established TCP connections to its port 22 (``ss`` inside the host), which must be exactly 1:
   the exporter's, kept open.
6. Stops the exporter (SIGTERM; it must exit 0) and takes the lab down, also on failure, Ctrl-C or
   SIGTERM.

Printed: p50/p90/p99/max of the scrape times, the response size, memory, CPU, connections, and the
machine's load average before and after (other work on the machine makes timings noisy).
Exit code 0 when every check passed, 2 when one failed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import platform
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import wiremesh
from benchlib import sigterm_unwinds
from wiremesh.codec.prometheus import parse
from wiremesh.errors import OperationError
from wiremesh.lab import Lab, MachineRecord

WIREMESH = Path(sys.prefix) / "bin" / "wiremesh"
LAB_WAIT_S = 600.0


class CheckFailed(Exception):
    """A result that makes the measurement meaningless."""


@dataclass
class Round:
    """What one round measured."""

    hosts: int
    seconds: float
    interval: float
    scrape_s: list[float] = field(default_factory=list)
    bytes: int = 0
    rss_mib: list[float] = field(default_factory=list)
    pss_mib: list[float] = field(default_factory=list)
    peak_rss_mib: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    connects: dict[str, float] = field(default_factory=dict)
    sessions_mid: dict[str, int] = field(default_factory=dict)
    sessions_end: dict[str, int] = field(default_factory=dict)
    bad_answers: list[str] = field(default_factory=list)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def wm(inventory: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(WIREMESH), "-f", str(inventory), *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False)
    if proc.returncode != 0:
        raise CheckFailed(f"{shlex.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int, timeout: float = 30.0) -> tuple[float, int, bytes]:
    """(seconds, HTTP status, body) of one GET /metrics on a new connection."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/metrics", headers={"Accept": "text/plain"})
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    return time.perf_counter() - started, response.status, body


def memory(pid: int) -> tuple[float, float, float]:
    """(RSS, PSS, peak RSS) in MiB."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    kib = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith("Vm")}
    pss = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return kib["VmRSS"] / 1024, pss / 1024, kib["VmHWM"] / 1024


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ssh_sessions(lab: Lab, names: Sequence[str]) -> dict[str, int]:
    """Established TCP connections to port 22 inside each host."""
    out = {}
    for name in names:
        text = lab.exec(name, ["ss", "-H", "-t", "-n", "state", "established", "( sport = :22 )"])
        out[name] = len([line for line in text.stdout.splitlines() if line.strip()])
    return out


def check_answer(status: int, body: bytes, hosts: int) -> str | None:
    """Why an answer is wrong, or None."""
    if status != 200:
        return f"HTTP {status}"
    samples = parse(body.decode())
    reachable = sum(v for _, v in samples.get("wiremesh_host_reachable", []))
    if reachable != hosts:
        return f"{reachable:g} of {hosts} hosts reachable"
    expected = samples["wiremesh_links_expected"][0][1]
    if expected != hosts * (hosts - 1):
        return f"{expected:g} links expected"
    down = {h["state"]: v for h, v in samples["wiremesh_links"]}["down"]
    if down:
        return f"{down:g} links down"
    return None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def lab_up(directory: Path, hosts: int) -> Lab:
    """``Lab.up``, waiting (up to :data:`LAB_WAIT_S`) while another session's lab runs, also one
    whose owner is not a live process of ours (a lab made by that session's CLI)."""
    deadline = time.monotonic() + LAB_WAIT_S
    while True:
        try:
            return Lab.up(directory, hosts, wait=LAB_WAIT_S)
        except OperationError as exc:
            if "another lab runs" not in exc.message or time.monotonic() > deadline:
                raise
            log(f"waiting: {exc.message}")
            while MachineRecord.load() is not None and time.monotonic() < deadline:
                time.sleep(10)


def one_round(base: Path, hosts: int, seconds: float, interval: float) -> Round:
    result = Round(hosts, seconds, interval, load_before=os.getloadavg())
    directory = base / f"lab-{time.strftime('%H%M%S')}"
    log(f"lab up --hosts {hosts} --dir {directory}")
    lab = lab_up(directory, hosts)
    exporter: subprocess.Popen[bytes] | None = None
    try:
        inventory = lab.inventory_path
        log("apply --yes; status --ping --json (untimed)")
        wm(inventory, "apply", "--yes")
        report = json.loads(wm(inventory, "status", "--ping", "--json").stdout)
        if not report["healthy"]:
            raise CheckFailed("the mesh is not healthy after apply")
        port = free_port()
        argv = [
            str(WIREMESH),
            "-f",
            str(inventory),
            "exporter",
            "--listen",
            f"127.0.0.1:{port}",
            "--interval",
            f"{interval:g}",
        ]
        log(shlex.join(argv).replace(str(directory), "DIR"))
        exporter = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 120
        while True:
            try:
                _, status, body = scrape(port)
                if check_answer(status, body, hosts) is None:
                    break
            except OSError:
                pass
            if exporter.poll() is not None or time.monotonic() > deadline:
                raise CheckFailed("the exporter did not come up with every host reachable")
            time.sleep(0.5)
        log(f"scraping every 1 s for {seconds:g} s")
        cpu0, wall0 = cpu_seconds(exporter.pid), time.monotonic()
        start = time.monotonic()
        n = int(seconds)
        for i in range(n):
            at = start + i
            time.sleep(max(0.0, at - time.monotonic()))
            took, status, body = scrape(port)
            result.scrape_s.append(took)
            result.bytes = len(body)
            problem = check_answer(status, body, hosts)
            if problem:
                result.bad_answers.append(f"scrape {i}: {problem}")
            rss, pss, peak = memory(exporter.pid)
            result.rss_mib.append(rss)
            result.pss_mib.append(pss)
            result.peak_rss_mib = peak
            if i == n // 2:
                result.sessions_mid = ssh_sessions(lab, [h.name for h in lab.hosts])
        result.cpu_s = cpu_seconds(exporter.pid) - cpu0
        result.wall_s = time.monotonic() - wall0
        result.sessions_end = ssh_sessions(lab, [h.name for h in lab.hosts])
        _, _, body = scrape(port)
        result.connects = {
            h["node"]: v for h, v in parse(body.decode())["wiremesh_exporter_ssh_connects_total"]
        }
        exporter.send_signal(signal.SIGTERM)
        code = exporter.wait(30)
        if code != 0:
            raise CheckFailed(f"the exporter exited {code} on SIGTERM")
        exporter = None
    finally:
        if exporter is not None and exporter.poll() is None:
            exporter.kill()
            exporter.wait()
        log("lab down")
        lab.down()
    result.load_after = os.getloadavg()
    return result


def summarize(rounds: list[Round]) -> tuple[str, bool]:
    lines = []
    ok = True
    for i, r in enumerate(rounds, 1):
        ms = [s * 1000 for s in r.scrape_s]
        lines.append(
            f"round {i}: {r.hosts} hosts, exporter --interval {r.interval:g}, "
            f"{len(ms)} scrapes in {r.seconds:g} s"
        )
        lines.append(
            f"  scrape ms: p50 {percentile(ms, 50):.1f}  p90 {percentile(ms, 90):.1f}  "
            f"p99 {percentile(ms, 99):.1f}  max {max(ms):.1f}  mean {statistics.mean(ms):.1f}  "
            f"({r.bytes / 1024:.0f} KiB each)"
        )
        lines.append(
            f"  exporter memory MiB: RSS {min(r.rss_mib):.1f}-{max(r.rss_mib):.1f} "
            f"(end {r.rss_mib[-1]:.1f}), PSS end {r.pss_mib[-1]:.1f}, peak RSS {r.peak_rss_mib:.1f}"
        )
        lines.append(
            f"  exporter CPU: {r.cpu_s:.1f} s in {r.wall_s:.0f} s ({100 * r.cpu_s / r.wall_s:.0f}% "
            "of one CPU)"
        )
        connects = sorted(set(r.connects.values()))
        mid, end = sorted(set(r.sessions_mid.values())), sorted(set(r.sessions_end.values()))
        lines.append(
            f"  SSH connections per host: exporter opened {connects} (over {len(r.connects)} "
            f"hosts); established on each host's port 22: halfway {mid}, end {end}"
        )
        lines.append(
            f"  load average before {r.load_before[0]:.2f} {r.load_before[1]:.2f} "
            f"{r.load_before[2]:.2f}, after {r.load_after[0]:.2f} {r.load_after[1]:.2f} "
            f"{r.load_after[2]:.2f}"
        )
        if r.bad_answers:
            ok = False
            lines.append(f"  BAD ANSWERS ({len(r.bad_answers)}): {r.bad_answers[:5]}")
        if connects != [1] or mid != [1] or end != [1] or len(r.connects) != r.hosts:
            ok = False
            lines.append("  FAILED: not exactly one SSH connection per host")
    if len(rounds) > 1:
        p99s = [percentile([s * 1000 for s in r.scrape_s], 99) for r in rounds]
        lines.append(f"p99 per round (ms): {', '.join(f'{p:.1f}' for p in p99s)}")
    return "\n".join(lines), ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--hosts", type=int, default=30)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0, help="the exporter's --interval")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/exporter.py needs root (lab hosts)", file=sys.stderr)
        return 2
    rounds: list[Round] = []
    base = Path(tempfile.mkdtemp(prefix="wm-bench-exporter-"))
    try:
        with sigterm_unwinds():
            for _ in range(args.repeat):
                rounds.append(one_round(base, args.hosts, args.seconds, args.interval))
                if args.json:
                    args.json.write_text(json.dumps([asdict(r) for r in rounds], indent=1))
    except (CheckFailed, OperationError) as exc:
        print(f"check failed: {exc}", file=sys.stderr)
        if rounds:
            print(summarize(rounds)[0])
        return 2
    finally:
        with contextlib.suppress(OSError):
            for child in sorted(base.rglob("*"), reverse=True):
                if child.is_dir():
                    child.rmdir()
                else:
                    child.unlink()
            base.rmdir()
    text, ok = summarize(rounds)
    print(
        f"wiremesh {wiremesh.__version__} ({Path(wiremesh.__file__).resolve().parents[2]}), "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print(text)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rounds], indent=1))
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
