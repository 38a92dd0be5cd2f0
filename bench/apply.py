"""Benchmark: ``wiremesh apply`` and ``status --ping`` on lab hosts, timed as real CLI runs (root only).

Run from the repository root, as root, with the project's venv::

    .venv/bin/python bench/apply.py                        # flat: 10 and 30 hosts, 3 rounds
    .venv/bin/python bench/apply.py --repeat 2 --serial-repeat 2 --json results.json
    .venv/bin/python bench/apply.py --topology mixed       # 11 public + sites a:8, b:8 + NAT home:4

To measure a clean commit while the working tree has uncommitted edits, put a clone first on the path
(the lab, this script and every ``wiremesh`` subprocess then use it; the summary names the checkout)::

    git clone -q . /tmp/wm-head && PYTHONPATH=/tmp/wm-head/src .venv/bin/python bench/apply.py

Every timed figure is the wall-clock time of a real subprocess ``.venv/bin/wiremesh -f INV ...``
(interpreter start-up and imports included), with its output captured (not a terminal, so no progress
display). Lab hosts are made with ``Lab.up(DIR, ..., wait=600)`` (the same as ``wiremesh lab up``,
waiting up to 600 s for another session's lab to go away); ``lab up`` and ``lab down`` are timed
separately and are not part of any figure. Every lab is taken down again, also on failure, Ctrl-C or
SIGTERM.

What it measures (flat topology, the default; ``--sizes 10 30``, the largest size gets the extras):

* cold bring-up of N hosts: on a fresh lab, ``apply --yes`` (keys made on the hosts, configs written,
  ``wg-quick up`` everywhere), then ``status --ping --json``, which must report ``healthy: true`` and
  all N(N-1) pings answered; a status run that is not healthy yet is repeated after 1 s (at most
  ``--verify-timeout`` s), and the verify time includes every run and pause (how many runs it took is
  printed). Printed: the apply time, the verify time, and their sum ("to a verified full mesh").
  For the largest size the lab has N+1 hosts and the last one is removed from the
  inventory first (``node rm labN+1 --forget``, untimed, before the first apply); it idles.
* no-op: ``apply --yes`` again on the verified N-host mesh; it must print "nothing to do", and no file
  in ``/etc/wireguard`` nor ``/etc/hosts`` may change on any host (size, mtime, ctime, sha256, checked
  from each host's console, untimed).
* add one: ``node add labN+1 --endpoint E --ssh root@labN+1`` (untimed), then ``apply --yes`` (timed)
  and ``status --ping --json`` on the N+1 hosts (timed, must be healthy with all pairs answering).
* serial: the same cold bring-up of N hosts on a fresh lab (also N+1 hosts, one forgotten), with
  ``apply --yes --parallel 1`` (one host at a time); verified the same way (status with its default
  parallelism); the ratio serial/parallel shows the parallelism.

The rounds are interleaved (10 hosts, 30 hosts, serial 30, then again) so that load from other work
on the machine spreads over all figures.

``--topology mixed`` (issue 5, item 7) does the same (cold bring-up, no-op, add-one, serial) on a lab
with public hosts, sites (a private per-site bridge; nodes of one site use each other's
``private_endpoint``) and hosts behind a NAT router (no endpoint; learnt from handshakes). The lab
is ``lab up --hosts 11 --site a:8 --site b:8 --nat home:4`` (31 hosts; the last public host, lab11,
is the added node). With NAT hosts, apply runs short follow-up rounds (each reads the hosts again and
waits up to ~5 s for NAT handshakes); they are part of its time.

Before measuring, a warm-up (untimed) compiles wiremesh's modules to bytecode and runs one 3-host
apply + status cycle. The machine sets ``PYTHONDONTWRITEBYTECODE=1``; it is removed from the
environment of the measured runs (as for an installed package, whose bytecode pip compiles), unless
``--keep-no-bytecode``. The start-up cost of both settings (``wiremesh --version``) is printed.

Targets (issue 4, item 7): 30-host cold bring-up to a verified full mesh under 15 s, add-one under
3 s, no-op under 2 s (each judged on the median). Exit code: 0 if all pass, 1 if a target fails,
2 if a check fails (the mesh not healthy, a no-op that changes something, ...) or on usage errors.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import hashlib
import importlib.metadata
import inspect
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import wiremesh
from benchlib import sigterm_unwinds
from wiremesh.lab import Lab, MachineRecord

WIREMESH = Path(sys.prefix) / "bin" / "wiremesh"
LAB_WAIT_S = 600.0  # other sessions run lab tests on this machine: wait for their lab to go away

TARGET_COLD_S = 15.0  # cold bring-up of TARGET_COLD_N hosts to a verified full mesh
TARGET_COLD_N = 30
TARGET_ADD_S = 3.0  # add-one apply on the TARGET_COLD_N-host mesh
TARGET_NOOP_S = 2.0  # no-op apply on the TARGET_COLD_N-host mesh

SNAPSHOT = r"""cd /etc && for f in wireguard/* hosts; do
  [ -f "$f" ] && echo "$f $(stat -c '%s %y %z' "$f") $(sha256sum < "$f" | cut -d ' ' -f 1)"
done; true"""


class CheckFailed(Exception):
    """A result that makes the measurement meaningless (not healthy, a no-op that changed files...)."""


# --- what to build --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Topology:
    """A lab: ``public`` public hosts, then each site, then each NAT (hosts lab1..labM in that order)."""

    public: int
    sites: tuple[tuple[str, int], ...] = ()
    nats: tuple[tuple[str, int], ...] = ()

    @property
    def total(self) -> int:
        """How many hosts the lab has."""
        return self.public + sum(k for _, k in self.sites) + sum(k for _, k in self.nats)

    @property
    def mixed(self) -> bool:
        """True when there are sites or NATs."""
        return bool(self.sites or self.nats)

    def describe(self) -> str:
        """``11 public, site a:8, site b:8, NAT home:4``."""
        parts = [f"{self.public} public"] if self.public else []
        parts += [f"site {n}:{k}" for n, k in self.sites]
        parts += [f"NAT {n}:{k}" for n, k in self.nats]
        return ", ".join(parts)

    def lab_up_cli(self, directory: Path) -> str:
        """The ``wiremesh lab up`` command that builds the same lab."""
        argv = ["wiremesh", "lab", "up", "--hosts", str(self.public)]
        for n, k in self.sites:
            argv += ["--site", f"{n}:{k}"]
        for n, k in self.nats:
            argv += ["--nat", f"{n}:{k}"]
        return shlex.join([*argv, "--dir", str(directory)])

    def lab_up(self, directory: Path) -> Lab:
        """Create this lab (waiting up to :data:`LAB_WAIT_S` for another session's lab)."""
        if not self.mixed:
            return Lab.up(directory, self.public, wait=LAB_WAIT_S)
        if not mixed_supported():
            raise CheckFailed(
                "this wiremesh's Lab.up has no sites/nats (needs lab up --site/--nat)"
            )
        up: Any = Lab.up  # typed against whichever wiremesh is installed
        lab: Lab = up(
            directory,
            self.public,
            sites=dict(self.sites),
            nats=dict(self.nats),
            wait=LAB_WAIT_S,
        )
        return lab


def mixed_supported() -> bool:
    """True if ``Lab.up`` takes ``sites`` and ``nats`` (``wiremesh lab up --site/--nat``)."""
    params = inspect.signature(Lab.up).parameters
    return "sites" in params and "nats" in params


def parse_group(text: str, option: str) -> tuple[str, int]:
    """``NAME:K`` (the syntax of ``wiremesh lab up --site/--nat``)."""
    name, sep, count = text.partition(":")
    if not sep or not name or not count.isdigit() or int(count) < 1:
        raise argparse.ArgumentTypeError(f"{option} {text!r}: expected NAME:K, e.g. a:8")
    return name, int(count)


# --- running the CLI --------------------------------------------------------------------------------


@dataclass
class Runner:
    """Runs ``wiremesh`` as a subprocess, times it, and remembers the distinct command lines."""

    env: dict[str, str]
    commands: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    verbose: bool = True

    def run(
        self, inventory: Path, argv: Sequence[str], timed: bool = True, ok: Sequence[int] = (0,)
    ) -> tuple[float, subprocess.CompletedProcess[str]]:
        """Run ``wiremesh -f INVENTORY ARGV``; returns (seconds, result). Exit code must be in ``ok``."""
        cmd = [str(WIREMESH), "-f", str(inventory), *argv]
        shown = shlex.join(cmd)
        generic = shown.replace(str(inventory.parent), "DIR")
        self.commands[("timed:   " if timed else "untimed: ") + generic] = None
        started = time.perf_counter()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=self.env, timeout=900, check=False
        )
        elapsed = time.perf_counter() - started
        if proc.returncode not in ok:
            raise CheckFailed(
                f"`{shown}` exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return elapsed, proc


def log(text: str) -> None:
    """Progress on stderr (stdout carries the summary)."""
    print(text, file=sys.stderr, flush=True)


# --- checks -----------------------------------------------------------------------------------------


@dataclass
class Verified:
    """A verify step: time, how many ``status`` runs it took, and what the last one said."""

    seconds: float
    attempts: int
    runs: list[float]  # the wall time of each status run
    nodes: int
    pings_answered: int
    pings_lossy: int
    links: dict[str, int]


def verify(
    runner: Runner, inventory: Path, nodes: int, timeout: float
) -> tuple[Verified, list[str]]:
    """``status --ping --json`` until healthy with all N(N-1) pings answered (at most ``timeout`` s).

    Returns the result and the reasons of every attempt that was not healthy yet.
    """
    expected = nodes * (nodes - 1)
    started = time.perf_counter()
    attempts = 0
    problems: list[str] = []
    runs: list[float] = []
    while True:
        attempts += 1
        seconds, proc = runner.run(inventory, ["status", "--ping", "--json"], ok=(0, 1))
        runs.append(seconds)
        status = json.loads(proc.stdout)
        pings = status.get("ping") or []
        answered = sum(1 for p in pings if p["loss"] < 1.0)
        lossy = sum(1 for p in pings if 0.0 < p["loss"] < 1.0)
        good = (
            proc.returncode == 0
            and status["healthy"] is True
            and len(status["nodes"]) == nodes
            and len(pings) == expected
            and answered == expected
        )
        if good:
            return Verified(
                time.perf_counter() - started,
                attempts,
                runs,
                nodes,
                answered,
                lossy,
                dict(status["links"]),
            ), problems
        down = [
            f"{n['name']}->{p['name']} ({p.get('reason') or 'no handshake'})"
            for n in status["nodes"]
            for p in n.get("peers", [])
            if not p.get("up")
        ]
        problems.append(
            f"status #{attempts}: exit {proc.returncode}, healthy={status['healthy']}, "
            f"links={status['links']}, pings answered {answered}/{expected} (of {len(pings)}); "
            f"down: {', '.join(down[:6]) or '-'}"
        )
        if time.perf_counter() - started > timeout:
            raise CheckFailed(
                f"the mesh of {nodes} nodes is not healthy:\n  " + "\n  ".join(problems)
            )
        time.sleep(1.0)


def snapshot(lab: Lab, names: Sequence[str]) -> dict[str, str]:
    """Size, mtime, ctime and sha256 of /etc/wireguard/* and /etc/hosts on each host (its console)."""

    def one(name: str) -> tuple[str, str]:
        return name, lab.exec(name, ["sh", "-c", SNAPSHOT], timeout=60).stdout

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(one, names))


# --- one round ----------------------------------------------------------------------------------------


@dataclass
class Options:
    """What a round does besides the cold bring-up."""

    parallel: int | None = None  # --parallel for the cold apply (None: wiremesh's default)
    noop_repeat: int = 0
    add_one: bool = False
    verify_timeout: float = 60.0


def node_args(node: dict[str, Any]) -> list[str]:
    """``node add`` options that recreate ``node`` as ``node ls --json`` showed it."""
    argv = [node["name"]]
    for key, option in (
        ("endpoint", "--endpoint"),
        ("ssh", "--ssh"),
        ("site", "--site"),
        ("private_endpoint", "--private-endpoint"),
    ):
        if node.get(key):
            argv += [option, str(node[key])]
    return argv


def one_round(
    runner: Runner,
    topology: Topology,
    spare: str | None,
    base: Path,
    label: str,
    opts: Options,
) -> dict[str, Any]:
    """A fresh lab, a cold bring-up (and no-ops and an add-one if asked), the lab taken down."""
    directory = base / label
    result: dict[str, Any] = {"label": label, "lab_hosts": topology.total}
    shown = topology.lab_up_cli(directory).replace(str(directory), "DIR")
    runner.commands[f"lab:     {shown}   (as Lab.up(..., wait=600))"] = None
    started = time.perf_counter()
    lab = topology.lab_up(directory)
    result["lab_up_s"] = time.perf_counter() - started
    log(f"[{label}] lab up: {topology.total} hosts in {result['lab_up_s']:.2f} s")
    try:
        inv = lab.inventory_path
        nodes = json.loads(runner.run(inv, ["node", "ls", "--json"], timed=False)[1].stdout)[
            "nodes"
        ]
        spare_node: dict[str, Any] | None = None
        if spare is not None:
            spare_node = next(n for n in nodes if n["name"] == spare)
            runner.run(inv, ["node", "rm", spare, "--forget"], timed=False)
        members = [n["name"] for n in nodes if n["name"] != spare]
        n = len(members)
        result["nodes"] = n

        argv = ["apply", "--yes"] + (["--parallel", str(opts.parallel)] if opts.parallel else [])
        result["load_before"] = os.getloadavg()[0]
        result["apply_s"], proc = runner.run(inv, argv)
        if "converged" not in proc.stdout:
            raise CheckFailed(f"cold apply did not say it converged:\n{proc.stdout[-2000:]}")
        checked, problems = verify(runner, inv, n, opts.verify_timeout)
        result["verify_s"] = checked.seconds
        result["verify_attempts"] = checked.attempts
        result["verify_runs_s"] = checked.runs
        result["verify_problems"] = problems
        result["links"] = checked.links
        result["pings_lossy"] = checked.pings_lossy
        result["total_s"] = result["apply_s"] + result["verify_s"]
        log(
            f"[{label}] cold apply {n} hosts{' --parallel ' + str(opts.parallel) if opts.parallel else ''}"
            f": {result['apply_s']:.2f} s, verify {checked.seconds:.2f} s "
            f"({checked.attempts} status run(s), links {checked.links}), "
            f"to a verified mesh {result['total_s']:.2f} s"
        )
        for p in problems:
            log(f"[{label}]   not yet healthy: {p}")

        if opts.noop_repeat:
            before = snapshot(lab, members)
            noops = []
            for _ in range(opts.noop_repeat):
                seconds, proc = runner.run(inv, ["apply", "--yes"])
                if "nothing to do" not in proc.stdout:
                    raise CheckFailed(f"no-op apply did not say 'nothing to do':\n{proc.stdout}")
                noops.append(seconds)
            after = snapshot(lab, members)
            changed = [h for h in members if before[h] != after[h]]
            if changed:
                raise CheckFailed(
                    f"a no-op apply changed files on {changed}:\n"
                    f"before: {before[changed[0]]}\nafter: {after[changed[0]]}"
                )
            files = sum(len(s.splitlines()) for s in after.values())
            digest = hashlib.sha256("".join(after.values()).encode()).hexdigest()[:12]
            result["noop_s"] = noops
            result["noop_files_checked"] = files
            log(
                f"[{label}] no-op apply x{len(noops)}: "
                + ", ".join(f"{s:.2f}" for s in noops)
                + f" s; {files} files on {len(members)} hosts unchanged (digest {digest})"
            )

        if opts.add_one and spare_node is not None:
            runner.run(inv, ["node", "add", *node_args(spare_node)], timed=False)
            result["load_before_add"] = os.getloadavg()[0]
            result["add_s"], proc = runner.run(inv, ["apply", "--yes"])
            checked, problems = verify(runner, inv, n + 1, opts.verify_timeout)
            result["add_verify_s"] = checked.seconds
            result["add_verify_attempts"] = checked.attempts
            result["add_verify_runs_s"] = checked.runs
            result["add_verify_problems"] = problems
            log(
                f"[{label}] add {spare} ({n} -> {n + 1} hosts): apply {result['add_s']:.2f} s, "
                f"verify {checked.seconds:.2f} s ({checked.attempts} status run(s))"
            )
            for p in problems:
                log(f"[{label}]   not yet healthy: {p}")
    finally:
        started = time.perf_counter()
        lab.down()
        result["lab_down_s"] = time.perf_counter() - started
        with contextlib.suppress(OSError):
            directory.rmdir()
    return result


# --- set-up, machine, summary -------------------------------------------------------------------------


def sh(argv: Sequence[str]) -> str:
    """A command's stdout (stripped), or '' if it cannot run."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return ""
    return (proc.stdout or proc.stderr).strip()


def machine() -> dict[str, Any]:
    """What this runs on, and which wiremesh."""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "?",
    )
    mem = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    source = Path(wiremesh.__file__).resolve().parents[2]  # the checkout wiremesh is imported from
    dirty = sh(["git", "-C", str(source), "status", "--porcelain", "--", "src"]).splitlines()
    return {
        "nproc": sh(["nproc"]),
        "cpu_model": model,
        "mem_gib": round(mem / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "source": str(source),
        "commit": sh(["git", "-C", str(source), "rev-parse", "--short", "HEAD"]),
        "uncommitted_src": dirty,
        "wiremesh": wiremesh.__version__,
        "asyncssh": importlib.metadata.version("asyncssh"),
        "openssh": sh(["ssh", "-V"]),
        "wireguard_go": sh(["wireguard-go", "--version"]).splitlines()[0:1],
        "load_start": os.getloadavg(),
    }


def startup(env: dict[str, str]) -> float:
    """Best of 5 ``wiremesh --version`` wall-clock times in ``env``."""
    times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([str(WIREMESH), "--version"], env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return min(times)


def warm_up(runner: Runner, base: Path, verify_timeout: float) -> None:
    """Bytecode for every wiremesh module, then one untimed 3-host apply + status cycle."""
    package = Path(wiremesh.__file__).parent
    compileall.compile_dir(package, quiet=1)
    opts = Options(verify_timeout=verify_timeout)
    one_round(runner, Topology(3), None, base, "warm-up", opts)


def stats(values: Sequence[float]) -> str:
    """``median / best (n)``."""
    if not values:
        return "-"
    return f"{statistics.median(values):6.2f} / {min(values):6.2f}  ({len(values)})"


def leftovers(base: Path) -> str:
    """``ip netns list`` after the run, and whose lab owns what is listed ('' when empty).

    Other sessions' lab tests may start the moment this benchmark's last lab is down.
    """
    left = sh(["ip", "netns", "list"])
    if not left:
        return ""
    record = MachineRecord.load()
    if record is None:
        return left + "\n(no lab is recorded as running)"
    mine = record.dir == base or base in record.dir.parents
    return (
        left + f"\n(the running lab is {record.dir}: {'THIS' if mine else 'not this'} benchmark's)"
    )


# --- main ------------------------------------------------------------------------------------------


def main() -> int:
    """Parse options, measure, print a summary; the exit code tells whether the targets were met."""
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--topology", choices=["flat", "mixed"], default="flat")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[10, 30],
        help="flat: node counts for cold bring-up; the largest also gets no-op, add-one and serial",
    )
    parser.add_argument(
        "--public", type=int, default=11, help="mixed: public hosts (the last is the added node)"
    )
    parser.add_argument(
        "--site",
        action="append",
        type=lambda t: parse_group(t, "--site"),
        metavar="NAME:K",
        help="mixed: a site (repeatable; default a:8 and b:8)",
    )
    parser.add_argument(
        "--nat",
        action="append",
        type=lambda t: parse_group(t, "--nat"),
        metavar="NAME:K",
        help="mixed: a NAT router (repeatable; default home:4)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of each parallel cold bring-up"
    )
    parser.add_argument(
        "--serial-repeat", type=int, default=2, help="rounds of the --parallel 1 bring-up (0: none)"
    )
    parser.add_argument("--noop-repeat", type=int, default=3, help="no-op applies per round")
    parser.add_argument(
        "--verify-timeout", type=float, default=60.0, help="seconds to wait for a healthy status"
    )
    parser.add_argument(
        "--keep-no-bytecode",
        action="store_true",
        help="keep PYTHONDONTWRITEBYTECODE for the measured runs (default: removed)",
    )
    parser.add_argument("--no-warm-up", action="store_true", help="skip the warm-up cycle")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write all results here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/apply.py needs root (it makes lab hosts)", file=sys.stderr)
        return 2
    if args.repeat < 1 or min(args.sizes) < 2:
        parser.error("--repeat must be at least 1 and every size at least 2")

    env = dict(os.environ)
    env_no_bytecode = dict(env, PYTHONDONTWRITEBYTECODE="1")
    if not args.keep_no_bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
    runner = Runner(env)
    info = machine()
    info["pythondontwritebytecode_in_measured_runs"] = "PYTHONDONTWRITEBYTECODE" in env

    large: Topology
    if args.topology == "flat":
        sizes = sorted(set(args.sizes))
        n_large = sizes[-1]
        large = Topology(n_large + 1)
        spare = f"lab{n_large + 1}"
    else:
        sites = tuple(args.site or [("a", 8), ("b", 8)])
        nats = tuple(args.nat or [("home", 4)])
        if args.public < 2:
            parser.error("--public must be at least 2 (one of them is the added node)")
        large = Topology(args.public, sites, nats)
        sizes = []
        n_large = large.total - 1
        spare = f"lab{args.public}"
        if not mixed_supported():
            print(
                "--topology mixed: this wiremesh's lab cannot make sites or NAT hosts yet "
                "(Lab.up has no sites/nats; `wiremesh lab up --help` has no --site/--nat)",
                file=sys.stderr,
            )
            return 2

    results: dict[str, Any] = {"machine": info, "topology": args.topology, "rounds": []}
    failures: list[str] = []
    checks_failed: list[str] = []
    base = Path(tempfile.mkdtemp(prefix="wm-bench-apply-"))
    try:
        with sigterm_unwinds():
            no_bc = startup(env_no_bytecode)
            if not args.no_warm_up:
                log("warm-up: bytecode, one 3-host apply + status cycle (untimed)")
                warm_up(runner, base, args.verify_timeout)
            with_bc = startup(env)
            info["startup_s"] = {"PYTHONDONTWRITEBYTECODE=1": no_bc, "measured env": with_bc}
            rounds: list[dict[str, Any]] = results["rounds"]
            for i in range(1, max(args.repeat, args.serial_repeat) + 1):
                if i <= args.repeat:
                    for n in sizes[:-1]:
                        r = one_round(runner, Topology(n), None, base, f"cold{n}-{i}", Options())
                        rounds.append({"kind": "cold", **r})
                    opts = Options(
                        noop_repeat=args.noop_repeat,
                        add_one=True,
                        verify_timeout=args.verify_timeout,
                    )
                    r = one_round(runner, large, spare, base, f"cold{n_large}-{i}", opts)
                    rounds.append({"kind": "cold+extras", **r})
                if i <= args.serial_repeat:
                    opts = Options(parallel=1, verify_timeout=args.verify_timeout)
                    r = one_round(runner, large, spare, base, f"serial{n_large}-{i}", opts)
                    rounds.append({"kind": "serial", **r})
    except CheckFailed as e:
        checks_failed.append(str(e))
        print(f"CHECK FAILED: {e}", file=sys.stderr)
    except KeyboardInterrupt:
        print("interrupted; every lab was taken down", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(base, ignore_errors=True)
        left = leftovers(base)
        results["netns_left"] = left
        if left:
            print(f"ip netns list is not empty after the run:\n{left}", file=sys.stderr)

    summary = summarize(results, n_large, sizes, large, spare, runner, failures)
    print(summary)
    if args.json:
        results["commands"] = list(runner.commands)
        results["failures"] = failures
        results["checks_failed"] = checks_failed
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    if checks_failed:
        return 2
    return 1 if failures else 0


def summarize(
    results: dict[str, Any],
    n_large: int,
    sizes: list[int],
    large: Topology,
    spare: str,
    runner: Runner,
    failures: list[str],
) -> str:
    """The printed report; appends failed targets to ``failures``."""
    info = results["machine"]
    rounds: list[dict[str, Any]] = results["rounds"]
    out: list[str] = []
    out.append(
        f"machine: nproc {info['nproc']}, {info['cpu_model']}, {info['mem_gib']} GiB, "
        f"kernel {info['kernel']}, Python {info['python']}, asyncssh {info['asyncssh']}, "
        f"{info['openssh']}"
    )
    out.append(
        f"wiremesh {info['wiremesh']} from {info['source']} at commit {info['commit']}"
        + (
            f" + uncommitted changes in {len(info['uncommitted_src'])} path(s) under src/"
            if info["uncommitted_src"]
            else ""
        )
    )
    out.append(
        "PYTHONDONTWRITEBYTECODE in the measured runs: "
        + ("kept (=1)" if info["pythondontwritebytecode_in_measured_runs"] else "removed")
        + "; `wiremesh --version` best of 5: "
        + ", ".join(f"{k}: {v:.3f} s" for k, v in info.get("startup_s", {}).items())
    )
    out.append(f"load average at start: {', '.join(f'{x:.2f}' for x in info['load_start'])}")
    out.append(f"topology: {results['topology']}; large lab: {large.describe()} ({spare} is added)")
    out.append("")
    out.append(f"{'seconds, median / best (runs)':<58} {'median':>6} / {'best':>6}  (n)")

    def row(what: str, values: Sequence[float]) -> None:
        out.append(f"{what:<58} {stats(values)}")

    def pick(kind: str, nodes: int, key: str) -> list[float]:
        return [
            float(r[key]) for r in rounds if r["kind"] == kind and r["nodes"] == nodes and key in r
        ]

    for n in sizes[:-1]:
        row(f"cold bring-up, {n} hosts: apply --yes", pick("cold", n, "apply_s"))
        row(f"  verify: status --ping --json ({n * (n - 1)} pings)", pick("cold", n, "verify_s"))
        row("  to a verified full mesh (apply + verify)", pick("cold", n, "total_s"))
    kind = "cold+extras"
    cold_total = pick(kind, n_large, "total_s")
    row(f"cold bring-up, {n_large} hosts: apply --yes", pick(kind, n_large, "apply_s"))
    row(
        f"  verify: status --ping --json ({n_large * (n_large - 1)} pings)",
        pick(kind, n_large, "verify_s"),
    )
    row("  to a verified full mesh (apply + verify)", cold_total)
    noops = [s for r in rounds if r["kind"] == kind for s in r.get("noop_s", [])]
    row(f"no-op apply --yes, {n_large} hosts", noops)
    add = pick(kind, n_large, "add_s")
    row(f"add one ({n_large} -> {n_large + 1}): apply --yes", add)
    row(
        f"  verify: status --ping --json ({(n_large + 1) * n_large} pings)",
        pick(kind, n_large, "add_verify_s"),
    )
    adds_total = [
        r["add_s"] + r["add_verify_s"] for r in rounds if r["kind"] == kind and "add_verify_s" in r
    ]
    row("  add one, apply + verify", adds_total)
    serial = pick("serial", n_large, "apply_s")
    if serial:
        row(f"serial cold bring-up, {n_large} hosts: apply --yes --parallel 1", serial)
        row("  verify: status --ping --json", pick("serial", n_large, "verify_s"))
        row("  to a verified full mesh (apply + verify)", pick("serial", n_large, "total_s"))
        par = pick(kind, n_large, "apply_s")
        serial_total = pick("serial", n_large, "total_s")
        if par and cold_total:
            med = statistics.median(serial) / statistics.median(par)
            best = min(serial) / min(par)
            total = statistics.median(serial_total) / statistics.median(cold_total)
            out.append(
                f"ratio serial / parallel apply: {med:.1f}x (medians), {best:.1f}x (bests); "
                f"to a verified mesh: {total:.1f}x (medians)"
            )
    runs = [
        t
        for r in rounds
        if r["nodes"] == n_large
        for k in ("verify_runs_s", "add_verify_runs_s")
        for t in r.get(k, [])
    ]
    row(f"one status --ping --json run on {n_large} or {n_large + 1} hosts (each run)", runs)
    attempts = [r[k] for r in rounds for k in ("verify_attempts", "add_verify_attempts") if k in r]
    first = sum(1 for a in attempts if a == 1)
    out.append(
        f"verify: the first status run was healthy in {first} of {len(attempts)} verify steps"
        + (
            f"; the others needed up to {max(attempts)} runs (the verify time includes every run "
            "and the 1 s pauses between them)"
            if first < len(attempts)
            else ""
        )
    )
    out.append(
        "lab up (not included above): "
        + stats([float(r["lab_up_s"]) for r in rounds if r["lab_hosts"] > 5])
        + "; lab down: "
        + stats([float(r["lab_down_s"]) for r in rounds if r["lab_hosts"] > 5])
    )
    out.append("")
    if n_large != TARGET_COLD_N:
        out.append(f"(the targets are for {TARGET_COLD_N} hosts; this run has {n_large})")
    for what, values, target in (
        (f"cold bring-up of {n_large} hosts to a verified full mesh", cold_total, TARGET_COLD_S),
        (f"add one to {n_large} hosts (apply)", add, TARGET_ADD_S),
        (f"no-op apply on {n_large} hosts", noops, TARGET_NOOP_S),
    ):
        if not values:
            out.append(f"NOT MEASURED: {what} (target < {target:g} s)")
            failures.append(what)
            continue
        med = statistics.median(values)
        verdict = "PASS" if med < target else "FAIL"
        if verdict == "FAIL":
            failures.append(what)
        out.append(f"{verdict}: {what}: median {med:.2f} s (target < {target:g} s)")
    out.append("")
    out.append("commands (DIR is a fresh lab directory per round):")
    out.extend("  " + c for c in runner.commands)
    out.append(f"ip netns list at the end: {results['netns_left'] or '(empty)'}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
