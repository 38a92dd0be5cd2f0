"""Benchmark: ``wiremesh render`` against wg-meshconf on full meshes of N nodes.

Run from the repository root, with the project's venv::

    .venv/bin/python bench/render.py                       # N = 100, 400, 1000; 3 runs each
    .venv/bin/python bench/render.py --sizes 100,400 --repeat 5
    .venv/bin/python bench/render.py --skip-meshconf       # wiremesh only

What it measures, for each N (the same N nodes for both tools: names ``node-0001``..., overlay
addresses in 10.10.0.0/16, public endpoints ``IP:port`` in the documentation ranges 198.51.100.0/24,
203.0.113.0/24 and 192.0.2.0/24; nothing is sent anywhere, these are only strings in configs):

* wiremesh, cold: a fresh inventory (made untimed: ``wiremesh init`` once, then the ``[[node]]``
  tables written into the TOML) and no key directory; timed is the wall-clock time of the real
  console script ``wiremesh -f INV render --out DIR`` as a subprocess: interpreter start, reading
  and validating the inventory, generating N key pairs (written 0600 to the key directory), writing
  the public keys back into the inventory, and writing N configs of N-1 peers each (0600).
* wiremesh, warm: the same command run again on that inventory (keys exist) into a new directory.
* ``wiremesh.ops.render.render_all`` in this process, cold (a fresh copy of the inventory, no keys):
  the same work without interpreter start and imports.
* wg-meshconf (from PyPI, installed into its own venv ``bench/.venv-wg-meshconf``, created here if
  missing), for N <= 400 by default: its CSV database is built untimed with one
  ``DatabaseManager.addpeer`` call per node (the function ``wg-meshconf addpeer`` runs; it also
  generates each node's private key); timed is the real console script
  ``wg-meshconf -d DB genconfig -o DIR`` as a subprocess, which writes the N configs.

Each measurement is repeated (``--repeat``, fresh directories each time); median and best are
printed, and the ratio wg-meshconf / wiremesh for both the cold and the warm wiremesh runs. Outputs
are checked: N configs (mode 0600 for wiremesh), N-1 ``[Peer]`` sections in the first, middle and
last config, and for node 1 the same peer endpoints and AllowedIPs from both tools. The targets
(wiremesh cold at least 20x faster than wg-meshconf at N = 400; N = 1000 in under 3 s) are checked
on the medians; the exit status is 1 if one fails, 2 if a tool fails or its output is wrong.

All files go to a temporary directory (under ``--tmp DIR``, default ``$TMPDIR`` or /tmp), removed at
the end. Before timing, each tool runs once on a 3-node mesh so that its bytecode is cached (under
the work directory, via PYTHONPYCACHEPREFIX), as it is for an installed package. The file system
matters: creating N directories and 2N files is a large part of wiremesh's time on a slow disk.
The wiremesh measured is the one this interpreter imports; to measure a clean commit while the
working tree has other changes, put a clean clone's ``src`` first on PYTHONPATH.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import wiremesh
from wiremesh.ops.render import render_all
from wiremesh.store.inventory_file import InventoryFile

ROOT = Path(__file__).resolve().parent.parent
MESHCONF_VENV = ROOT / "bench" / ".venv-wg-meshconf"
MESHCONF_PACKAGE = "wg-meshconf"

CIDR = IPv4Network("10.10.0.0/16")
PORT = 51820
MTU = 1420
INTERFACE = "wg0"
# Documentation ranges (RFC 5737): 3 x 254 public addresses; more nodes reuse them with other ports.
PUBLIC_NETS = ("198.51.100", "203.0.113", "192.0.2")
HOSTS_PER_NET = 254

TARGET_RATIO = 20.0
TARGET_RATIO_N = 400
TARGET_SECONDS = 3.0
TARGET_SECONDS_N = 1000

# Runs inside the wg-meshconf venv: builds its database with the same call ``wg-meshconf addpeer``
# makes for each node (one process instead of N, because only genconfig is timed).
BUILD_MESHCONF_DB = """
import json, pathlib, sys
from wg_meshconf.database_manager import DatabaseManager

db = DatabaseManager(pathlib.Path(sys.argv[1]))
for node in json.loads(pathlib.Path(sys.argv[2]).read_text()):
    db.addpeer(
        Name=node["name"],
        Address=[node["address"] + "/32"],
        Endpoint=node["host"],
        ListenPort=node["port"],
        MTU=node["mtu"],
    )
"""


@dataclass(frozen=True)
class BenchNode:
    """One node of the benchmark mesh, as both tools get it."""

    name: str
    address: IPv4Address
    host: str
    port: int

    @property
    def endpoint(self) -> str:
        """``IP:port``."""
        return f"{self.host}:{self.port}"


def make_nodes(count: int) -> list[BenchNode]:
    """``count`` nodes with distinct names, overlay addresses and public endpoints."""
    per_port = len(PUBLIC_NETS) * HOSTS_PER_NET
    nodes = []
    for index in range(count):
        slot = index % per_port
        host = f"{PUBLIC_NETS[slot // HOSTS_PER_NET]}.{slot % HOSTS_PER_NET + 1}"
        nodes.append(
            BenchNode(
                name=f"node-{index + 1:04d}",
                address=CIDR.network_address + index + 1,
                host=host,
                port=PORT + index // per_port,
            )
        )
    return nodes


def inventory_text(init_text: str, nodes: Sequence[BenchNode]) -> str:
    """The text of ``wiremesh init`` followed by one ``[[node]]`` table per node."""
    parts = [init_text.rstrip("\n"), ""]
    for node in nodes:
        parts += ["", "[[node]]", f'name = "{node.name}"', f'address = "{node.address}"']
        parts.append(f'endpoint = "{node.endpoint}"')
        if node.port != PORT:
            parts.append(f"listen_port = {node.port}")
    return "\n".join(parts) + "\n"


@dataclass
class Timings:
    """Repeated measurements of one thing, in seconds."""

    samples: list[float] = field(default_factory=list)

    @property
    def best(self) -> float:
        """The fastest run."""
        return min(self.samples)

    @property
    def median(self) -> float:
        """The median run."""
        return statistics.median(self.samples)

    def cell(self) -> str:
        """``median (best)`` for the table."""
        if not self.samples:
            return "-"
        return f"{self.median:.3f} ({self.best:.3f})"


@dataclass
class SizeResult:
    """Everything measured for one N."""

    size: int
    cold: Timings = field(default_factory=Timings)
    warm: Timings = field(default_factory=Timings)
    in_process: Timings = field(default_factory=Timings)
    meshconf: Timings = field(default_factory=Timings)
    meshconf_mode: int | None = None

    def ratio(self) -> float | None:
        """wg-meshconf median / wiremesh cold median."""
        if not self.meshconf.samples or not self.cold.samples:
            return None
        return self.meshconf.median / self.cold.median


class BenchError(Exception):
    """A tool failed or its output is wrong."""


def subprocess_env(work: Path) -> dict[str, str]:
    """The environment of the tools: no $WIREMESH_FILE; bytecode cached under ``work``.

    The bytecode cache is what an installed package has; PYTHONDONTWRITEBYTECODE would prevent it.
    """
    env = {
        k: v for k, v in os.environ.items() if k not in ("WIREMESH_FILE", "PYTHONDONTWRITEBYTECODE")
    }
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def settle() -> None:
    """Let the disk finish what earlier runs left (writeback, and the discards of deleted output on
    this ext4 mounted with ``discard``) before a timed run, so that no run pays for the previous
    one's clean-up. Done before every timed run of both tools."""
    os.sync()
    time.sleep(0.5)


def run_timed(argv: Sequence[str | Path], cwd: Path, env: dict[str, str]) -> float:
    """Wall-clock seconds of one subprocess; its failure is a :class:`BenchError`."""
    settle()
    start = time.perf_counter()
    proc = subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(
            f"{' '.join(map(str, argv))} failed with status {proc.returncode}:\n"
            f"{proc.stdout}{proc.stderr}"
        )
    return elapsed


def peer_sections(path: Path) -> list[tuple[str, str]]:
    """``(Endpoint, AllowedIPs)`` of every ``[Peer]`` section of a wg-quick config."""
    peers: list[dict[str, str]] = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line == "[Peer]":
            peers.append({})
        elif peers and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            peers[-1][key.strip().lower()] = value.strip()
    return [(p.get("endpoint", ""), p.get("allowedips", "")) for p in peers]


def check_peers(path: Path, nodes: Sequence[BenchNode], index: int) -> list[tuple[str, str]]:
    """Check that the config of ``nodes[index]`` has exactly the other nodes as peers."""
    got = peer_sections(path)
    want = sorted((n.endpoint, f"{n.address}/32") for i, n in enumerate(nodes) if i != index)
    if sorted(got) != want:
        raise BenchError(
            f"{path}: {len(got)} peers, expected the other {len(nodes) - 1} nodes "
            "(endpoints and AllowedIPs differ)"
        )
    return got


def sample_indexes(count: int) -> list[int]:
    """First, middle and last node."""
    return sorted({0, count // 2, count - 1})


def verify_wiremesh(out: Path, inventory: Path, nodes: Sequence[BenchNode]) -> None:
    """N configs, each 0600; N-1 peers in a few; N keys; N public keys in the inventory."""
    for node in nodes:
        conf = out / node.name / f"{INTERFACE}.conf"
        try:
            mode = conf.stat().st_mode & 0o777
        except FileNotFoundError:
            raise BenchError(f"wiremesh did not write {conf}") from None
        if mode != 0o600:
            raise BenchError(f"{conf} has mode {mode:04o}, expected 0600")
    configs = list(out.glob(f"*/{INTERFACE}.conf"))
    if len(configs) != len(nodes):
        raise BenchError(f"wiremesh wrote {len(configs)} configs for {len(nodes)} nodes")
    for index in sample_indexes(len(nodes)):
        check_peers(out / nodes[index].name / f"{INTERFACE}.conf", nodes, index)
    keys = list(inventory.with_suffix(".keys").glob("*.key"))
    if len(keys) != len(nodes):
        raise BenchError(f"wiremesh made {len(keys)} keys for {len(nodes)} nodes")
    if inventory.read_text().count("public_key = ") != len(nodes):
        raise BenchError("the inventory does not hold a public key for every node")


def verify_meshconf(out: Path, nodes: Sequence[BenchNode]) -> None:
    """N configs; exactly the N-1 other nodes as peers in a few of them."""
    configs = list(out.glob("*.conf"))
    if len(configs) != len(nodes):
        raise BenchError(f"wg-meshconf wrote {len(configs)} configs for {len(nodes)} nodes")
    for index in sample_indexes(len(nodes)):
        check_peers(out / f"{nodes[index].name}.conf", nodes, index)


def same_peers_for_node_1(ours: Path, theirs: Path) -> None:
    """Node 1's peers (endpoint, AllowedIPs) are the same in both tools' configs."""
    if sorted(peer_sections(ours)) != sorted(peer_sections(theirs)):
        raise BenchError(f"{ours} and {theirs} list different peers")


def wiremesh_command() -> Path:
    """The ``wiremesh`` console script of the venv running this script."""
    script = Path(sys.executable).with_name("wiremesh")
    if not script.exists():
        raise BenchError(f"no {script}: run this with the project's venv, .venv/bin/python")
    return script


def init_text(wm: Path, work: Path, env: dict[str, str]) -> str:
    """What ``wiremesh init`` writes for the benchmark mesh (untimed setup)."""
    path = work / "init.toml"
    run_timed([wm, "-f", path, "init", "--cidr", str(CIDR), "--name", "bench"], work, env)
    return path.read_text()


def new_run_dir(work: Path, label: str) -> Path:
    """A fresh, empty directory for one run."""
    return Path(tempfile.mkdtemp(prefix=f"{label}-", dir=work))


def bench_wiremesh(
    wm: Path,
    work: Path,
    env: dict[str, str],
    text: str,
    nodes: Sequence[BenchNode],
    result: SizeResult,
    keep: Path,
) -> None:
    """One repetition: cold CLI, warm CLI, cold in-process render_all; keeps node 1's config."""
    run = new_run_dir(work, f"wiremesh-{len(nodes)}")
    inventory = run / "inventory.toml"
    inventory.write_text(text)
    out = run / "out"
    result.cold.samples.append(run_timed([wm, "-f", inventory, "render", "--out", out], run, env))
    verify_wiremesh(out, inventory, nodes)
    shutil.copyfile(out / nodes[0].name / f"{INTERFACE}.conf", keep)
    shutil.rmtree(out)
    out_warm = run / "out-warm"
    result.warm.samples.append(
        run_timed([wm, "-f", inventory, "render", "--out", out_warm], run, env)
    )
    verify_wiremesh(out_warm, inventory, nodes)
    shutil.rmtree(run)

    run = new_run_dir(work, f"render-all-{len(nodes)}")
    inventory = run / "inventory.toml"
    inventory.write_text(text)
    out = run / "out"
    settle()
    start = time.perf_counter()
    report = render_all(InventoryFile(inventory), out)
    result.in_process.samples.append(time.perf_counter() - start)
    if len(report.files) != len(nodes) or len(report.new_keys) != len(nodes):
        raise BenchError(f"render_all wrote {len(report.files)} configs for {len(nodes)} nodes")
    verify_wiremesh(out, inventory, nodes)
    shutil.rmtree(run)


def ensure_meshconf(log: Callable[[str], None]) -> Path:
    """The wg-meshconf venv's python, installing wg-meshconf from PyPI if the venv is missing."""
    python = MESHCONF_VENV / "bin" / "python"
    if not (MESHCONF_VENV / "bin" / "wg-meshconf").exists():
        log(f"creating {MESHCONF_VENV} and installing {MESHCONF_PACKAGE} from PyPI")
        subprocess.run(["python3", "-m", "venv", str(MESHCONF_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", MESHCONF_PACKAGE], check=True
        )
    return python


def meshconf_version(python: Path) -> str:
    """The installed wg-meshconf version."""
    code = "import importlib.metadata as m; print(m.version('wg-meshconf'))"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


def build_meshconf_db(
    python: Path, work: Path, env: dict[str, str], nodes: Sequence[BenchNode]
) -> Path:
    """wg-meshconf's CSV database for ``nodes`` (untimed setup); checked to have N rows."""
    run = new_run_dir(work, f"meshconf-db-{len(nodes)}")
    spec = run / "nodes.json"
    spec.write_text(
        json.dumps(
            [
                {"name": n.name, "address": str(n.address), "host": n.host, "port": n.port}
                | {"mtu": MTU}
                for n in nodes
            ]
        )
    )
    db = run / "database.csv"
    run_timed([python, "-c", BUILD_MESHCONF_DB, db, spec], run, env)
    with db.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if len(rows) != len(nodes) or not all(row["PrivateKey"] for row in rows):
        raise BenchError(f"wg-meshconf database {db} has {len(rows)} rows for {len(nodes)} nodes")
    return db


def bench_meshconf(
    python: Path,
    db: Path,
    work: Path,
    env: dict[str, str],
    nodes: Sequence[BenchNode],
    result: SizeResult,
    keep: Path,
) -> None:
    """One repetition of ``wg-meshconf genconfig`` for all nodes, into a new directory."""
    run = new_run_dir(work, f"meshconf-{len(nodes)}")
    out = run / "out"
    wgm = python.with_name("wg-meshconf")
    result.meshconf.samples.append(run_timed([wgm, "-d", db, "genconfig", "-o", out], run, env))
    verify_meshconf(out, nodes)
    result.meshconf_mode = (out / f"{nodes[0].name}.conf").stat().st_mode & 0o777
    shutil.copyfile(out / f"{nodes[0].name}.conf", keep)
    shutil.rmtree(run)


def warm_up(wm: Path, python: Path | None, work: Path, env: dict[str, str], init: str) -> None:
    """Run each tool once on a 3-node mesh, untimed, so that its bytecode is cached."""
    nodes = make_nodes(3)
    scratch = SizeResult(len(nodes))
    keep = work / "warm-up.conf"
    bench_wiremesh(wm, work, env, inventory_text(init, nodes), nodes, scratch, keep)
    if python is not None:
        db = build_meshconf_db(python, work, env, nodes)
        bench_meshconf(python, db, work, env, nodes, scratch, keep)
        shutil.rmtree(db.parent)


def machine() -> str:
    """CPU count and model."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU(s), {model}"


def wiremesh_source() -> Path:
    """The directory of the ``wiremesh`` package being measured (``PYTHONPATH`` can point elsewhere)."""
    return Path(wiremesh.__file__).resolve().parent


def git(args: Sequence[str], cwd: Path) -> str:
    """Output of a git command, stripped."""
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout.strip()


def wiremesh_commit() -> str:
    """Short commit of the measured source, plus a note when it has uncommitted changes."""
    source = wiremesh_source()
    try:
        head = git(["rev-parse", "--short", "HEAD"], source)
        dirty = git(["status", "--porcelain", "--", "."], source)
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head} + uncommitted changes in {source}" if dirty else head


def filesystem(path: Path) -> str:
    """Type and device of the file system holding ``path`` (from /proc/mounts)."""
    best = ("", "?", "?")
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "unknown"
    resolved = str(path.resolve())
    for line in mounts:
        device, point, kind = line.split()[:3]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, kind, device)
    return f"{best[1]} ({best[2]} on {best[0]})"


def ratio_cell(meshconf: Timings, ours: Timings) -> str:
    """``median ratio (best/best)`` of wg-meshconf over a wiremesh measurement."""
    if not meshconf.samples or not ours.samples:
        return "-"
    return f"{meshconf.median / ours.median:.1f}x ({meshconf.best / ours.best:.1f}x)"


def table(results: Sequence[SizeResult]) -> list[str]:
    """The results as a Markdown table; cells are ``median (best)``."""
    lines = [
        "| N | wiremesh render, cold CLI (s) | warm CLI (s) | render_all in-process, cold (s) | "
        "wg-meshconf genconfig (s) | ratio wg-meshconf / wiremesh cold | ratio / warm |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.size} | {r.cold.cell()} | {r.warm.cell()} | {r.in_process.cell()} | "
            f"{r.meshconf.cell()} | {ratio_cell(r.meshconf, r.cold)} | "
            f"{ratio_cell(r.meshconf, r.warm)} |"
        )
    return lines


def check_targets(results: Sequence[SizeResult]) -> list[tuple[str, str]]:
    """``(verdict, text)`` for each target: PASS, FAIL, or SKIP when it was not measured."""
    by_size = {r.size: r for r in results}
    verdicts = []
    ratio = by_size[TARGET_RATIO_N].ratio() if TARGET_RATIO_N in by_size else None
    what = f"at least {TARGET_RATIO:.0f}x faster than wg-meshconf at N = {TARGET_RATIO_N}"
    if ratio is None:
        verdicts.append(("SKIP", f"{what}: not measured"))
    else:
        verdict = "PASS" if ratio >= TARGET_RATIO else "FAIL"
        verdicts.append((verdict, f"{what}: {ratio:.1f}x"))
    what = f"N = {TARGET_SECONDS_N} in under {TARGET_SECONDS:.0f} s"
    if TARGET_SECONDS_N not in by_size:
        verdicts.append(("SKIP", f"{what}: not measured"))
    else:
        seconds = by_size[TARGET_SECONDS_N].cold.median
        verdict = "PASS" if seconds < TARGET_SECONDS else "FAIL"
        verdicts.append((verdict, f"{what}: {seconds:.3f} s"))
    return verdicts


def sizes_arg(text: str) -> list[int]:
    """``100,400`` -> [100, 400]."""
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of numbers: {text!r}") from None
    if not sizes or any(not 2 <= s <= 5000 for s in sizes):
        raise argparse.ArgumentTypeError("sizes must be numbers from 2 to 5000")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--sizes", type=sizes_arg, default=[100, 400, 1000], help="100,400,1000")
    p.add_argument(
        "--meshconf-sizes",
        type=sizes_arg,
        default=[100, 400],
        help="sizes also run with wg-meshconf (default 100,400; only those in --sizes)",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    p.add_argument("--skip-meshconf", action="store_true", help="time wiremesh only")
    p.add_argument(
        "--tmp",
        type=Path,
        default=None,
        metavar="DIR",
        help="make the temporary work directory in DIR (default: $TMPDIR or /tmp)",
    )
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; 0 if every measured target passes, 1 if one fails, 2 on errors."""
    args = parse_args(argv)

    def log(text: str) -> None:
        print(text, flush=True)

    try:
        wm = wiremesh_command()
        python = None if args.skip_meshconf else ensure_meshconf(log)
        log(f"machine:     {machine()}")
        log(f"python:      {platform.python_version()}")
        log(f"wiremesh:    {wiremesh.__version__}, commit {wiremesh_commit()}")
        log(f"             source {wiremesh_source()}, command {wm}")
        if python is not None:
            log(f"wg-meshconf: {meshconf_version(python)} ({MESHCONF_VENV.relative_to(ROOT)})")
        log(f"repeat:      {args.repeat}")
        results = []
        with tempfile.TemporaryDirectory(prefix="wiremesh-bench-", dir=args.tmp) as tmp:
            work = Path(tmp)
            log(f"work dir:    {work}, file system {filesystem(work)}")
            env = subprocess_env(work)
            text = init_text(wm, work, env)
            warm_up(wm, python, work, env, text)
            for size in args.sizes:
                nodes = make_nodes(size)
                result = SizeResult(size)
                ours, theirs = work / f"ours-{size}.conf", work / f"theirs-{size}.conf"
                for _ in range(args.repeat):
                    bench_wiremesh(wm, work, env, inventory_text(text, nodes), nodes, result, ours)
                log(f"N={size}: wiremesh cold {result.cold.cell()} s, warm {result.warm.cell()} s,")
                log(f"        render_all in-process {result.in_process.cell()} s")
                log(
                    f"        checked: {size} configs of mode 0600, {size} keys, {size} public keys "
                    f"in the inventory, {size - 1} peers in configs {sample_indexes(size)}"
                )
                if python is not None and size in args.meshconf_sizes:
                    db = build_meshconf_db(python, work, env, nodes)
                    for _ in range(args.repeat):
                        bench_meshconf(python, db, work, env, nodes, result, theirs)
                    shutil.rmtree(db.parent)
                    same_peers_for_node_1(ours, theirs)
                    log(f"        wg-meshconf genconfig {result.meshconf.cell()} s")
                    log(
                        f"        checked: {size} configs, {size - 1} peers in configs "
                        f"{sample_indexes(size)}, node 1's peers identical to wiremesh's; "
                        f"its files have mode {result.meshconf_mode or 0:04o}"
                    )
                results.append(result)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    log("")
    log(f"Seconds, median (best) of {args.repeat} runs; ratios of medians (of bests):")
    log("")
    for line in table(results):
        log(line)
    log("")
    verdicts = check_targets(results)
    for verdict, text in verdicts:
        log(f"{verdict}  {text}")
    return 1 if any(v == "FAIL" for v, _ in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
