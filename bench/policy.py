"""Benchmark: plan and apply of policy changes on 30 lab hosts, and the ruleset size per host (root).

Run from the repository root, as root, with the project's venv::

    .venv/bin/python bench/policy.py                  # 30 hosts, 3 rounds, sizes for 30 and 1000
    .venv/bin/python bench/policy.py --hosts 10 --rounds 5

On one lab of N hosts (``Lab.up(DIR, N, wait=600)``), after a plain ``apply --yes`` (untimed), each
figure is the wall-clock time of a real ``.venv/bin/wiremesh -f INV ...`` subprocess:

* policy on: a ``[policy]`` with ``default = "deny"``, groups app (half the nodes), db (a tenth)
  and the rest in none, rules app → db tcp/5432 and * → * tcp/22, two tests; ``plan`` (reads every
  host's table) and ``apply --yes`` (every host gets a new table: a full transaction, a boot file,
  and a config with its PreUp hook);
* no-op: ``plan`` and ``apply --yes`` again (nothing to do);
* join: one node moves into ``db``: set elements change on every host (``plan``, ``apply``);
* policy off: the ``[policy]`` table removed again: every table and boot file go (``apply``).

The rounds repeat all of it; the median of each figure is printed. Then the sizes: the compiled
transaction per host kind for 30 and 1000 nodes (``bench/policy_size.py``). Exit 2 when a step fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import policy_size
from wiremesh.lab import Lab

WIREMESH = Path(sys.executable).parent / "wiremesh"


def run(inventory: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    proc = subprocess.run(
        [str(WIREMESH), "-f", str(inventory), *args], capture_output=True, text=True, check=False
    )
    took = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(
            f"wiremesh {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}"
        )
    return took, proc


def with_policy(text: str, names: list[str], db_extra: str | None) -> str:
    """The inventory text with groups and a [policy] table (any earlier one removed)."""
    text = text.split("\n[policy]", maxsplit=1)[0].rstrip() + "\n"
    lines = []
    db = {names[i] for i in range(0, len(names), 10)}
    if db_extra:
        db.add(db_extra)
    app = {n for i, n in enumerate(names) if i % 2 == 1 and n not in db}
    for line in text.splitlines():
        if line.strip().startswith("groups ="):
            continue
        lines.append(line)
        for name in names:
            if line.strip() == f'name = "{name}"':
                group = "db" if name in db else "app" if name in app else None
                if group:
                    lines.append(f'groups = ["{group}"]')
    policy = f"""
[policy]
default = "deny"
rules = [
  {{ from = "app", to = "db", ports = "tcp/5432" }},
  {{ from = "*", to = "*", ports = "tcp/22" }},
]
tests = [
  {{ from = "{names[1]}", to = "{names[0]}", port = "tcp/5432", expect = "allow" }},
  {{ from = "{names[0]}", to = "{names[1]}", port = "tcp/5432", expect = "deny" }},
]
"""
    return "\n".join(lines) + "\n" + policy


def without_policy(text: str) -> str:
    text = text.split("\n[policy]", maxsplit=1)[0].rstrip() + "\n"
    return (
        "\n".join(line for line in text.splitlines() if not line.strip().startswith("groups ="))
        + "\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/wiremesh-bench-policy"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    figures: dict[str, list[float]] = {}

    def timed(label: str, inventory: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
        took, proc = run(inventory, *cmd)
        figures.setdefault(label, []).append(took)
        return proc

    lab = Lab.up(args.dir, args.hosts, wait=600)
    try:
        inventory = lab.inventory_path
        run(inventory, "apply", "--yes")
        names = [
            n["name"] for n in json.loads(run(inventory, "node", "ls", "--json")[1].stdout)["nodes"]
        ]
        base = inventory.read_text()
        for _ in range(args.rounds):
            inventory.write_text(with_policy(base, names, None))
            timed("plan, policy on", inventory, "plan")
            timed("apply, policy on", inventory, "apply", "--yes")
            timed("plan, no-op", inventory, "plan")
            proc = timed("apply, no-op", inventory, "apply", "--yes")
            if "nothing to do" not in proc.stdout + proc.stderr:
                raise SystemExit(f"the no-op apply changed something:\n{proc.stdout}")
            inventory.write_text(with_policy(base, names, names[2]))
            proc = timed("plan, one node joins db", inventory, "plan", "--json")
            kinds = {c["kind"] for h in json.loads(proc.stdout)["hosts"] for c in h["changes"]}
            if not kinds <= {"add_elements", "remove_elements", "boot_file_change", "write_config"}:
                raise SystemExit(f"joining a group changed more than set elements: {kinds}")
            timed("apply, one node joins db", inventory, "apply", "--yes")
            inventory.write_text(without_policy(inventory.read_text()))
            timed("apply, policy off", inventory, "apply", "--yes")
            run(inventory, "plan")
    finally:
        lab.down()
    print(
        f"policy on {args.hosts} lab hosts, median of {args.rounds} rounds (wall clock of the CLI):"
    )
    for label, values in figures.items():
        every = ", ".join(f"{v:.2f}" for v in values)
        print(f"  {label:<28} {statistics.median(values):6.2f} s   (all: {every})")
    for count in (30, 1000):
        policy_size.report(count)
    if args.json:
        args.json.write_text(
            json.dumps({k: statistics.median(v) for k, v in figures.items()}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
