"""The access policy on real lab hosts (issue 12, "It must show" 1-5): enforced with nftables over
real WireGuard, read back and diffed, verified by probes, a guard kept commit-confirmed.

One 4-host lab for the module: lab1 and lab3 are "app", lab2 is "db", lab4 is in no group. The tests
run in order and build on each other.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.helpers import Result, cli
from tests.integration.conftest import LAB_WAIT
from wiremesh.lab import Lab
from wiremesh.lab.pingprobe import PingProbe

pytestmark = pytest.mark.root

POLICY = """
[policy]
default = "deny"
rules = [{ from = "app", to = "db", ports = "tcp/5432" }]
tests = [
  { from = "lab1", to = "lab2", port = "tcp/5432", expect = "allow" },
  { from = "lab4", to = "lab2", port = "tcp/5432", expect = "deny" },
  { from = "lab1", to = "lab2", port = "tcp/5433", expect = "deny" },
]
"""

JOINED = POLICY.replace(
    '{ from = "lab4", to = "lab2", port = "tcp/5432", expect = "deny" }',
    '{ from = "lab4", to = "lab2", port = "tcp/5432", expect = "allow" }',
)
"""The policy once lab4 joined app."""

SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.listen(8)
while True:
    c, _ = s.accept()
    total = 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        total += len(b)
    c.sendall(str(total).encode())
    c.close()
"""

STREAM = r"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
sent, end = 0, time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    c.sendall(b"x" * 1024)
    sent += 1024
    time.sleep(0.005)
c.shutdown(socket.SHUT_WR)
got = int(c.recv(64).decode())
print(sent, got)
sys.exit(0 if got == sent else 1)
"""


def wm(lab: Lab, *args: str) -> Result:
    return cli("-f", str(lab.inventory_path), *args)


def set_groups(lab: Lab, groups: dict[str, list[str]]) -> None:
    """Give nodes their groups by editing the inventory text (each node table's name line)."""
    text = lab.inventory_path.read_text()
    lines = text.splitlines()
    out = []
    for line in lines:
        if line.strip().startswith("groups ="):
            continue
        out.append(line)
        for name, wanted in groups.items():
            if line.strip() == f'name = "{name}"' and wanted:
                out.append("groups = [" + ", ".join(f'"{g}"' for g in wanted) + "]")
    lab.inventory_path.write_text("\n".join(out) + "\n")


def set_policy(lab: Lab, policy: str) -> None:
    text = lab.inventory_path.read_text()
    if "[policy]" in text:
        text = text[: text.index("[policy]")].rstrip() + "\n"
    lab.inventory_path.write_text(text + policy)


def addresses(lab: Lab) -> dict[str, str]:
    nodes = json.loads(wm(lab, "node", "ls", "--json").out)["nodes"]
    return {n["name"]: n["address"] for n in nodes}


def tcp(lab: Lab, source: str, address: str, port: int, timeout: int = 2) -> str:
    """open, refused or timeout, as seen from ``source``."""
    script = f"timeout {timeout} bash -c 'exec 3<>/dev/tcp/{address}/{port}' 2>&1; echo rc=$?"
    out = lab.exec(source, ["sh", "-c", script], check=False).stdout
    if "rc=0" in out:
        return "open"
    if "rc=124" in out:
        return "timeout"
    if "refused" in out:
        return "refused"
    return out.strip()


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    directory = tmp_path_factory.mktemp("policy") / "lab"
    made = Lab.up(directory, 4, wait=LAB_WAIT)
    servers: list[subprocess.Popen[bytes]] = []
    try:
        for port in (5432, 5433):
            argv = made.exec_argv("lab2", ["python3", "-c", SERVER, str(port)])
            servers.append(subprocess.Popen(argv))
        assert wm(made, "apply", "--yes").code == 0
        yield made
    finally:
        for server in servers:
            server.kill()
            server.wait()
        made.down()


def test_deny_by_default_lets_through_what_rules_allow(lab: Lab) -> None:
    """1. app → db tcp/5432 connects (listener on db), a denied port times out, ping works, and
    policy verify reports exactly this."""
    set_groups(lab, {"lab1": ["app"], "lab3": ["app"], "lab2": ["db"]})
    set_policy(lab, POLICY)
    plan = json.loads(wm(lab, "plan", "--json").out)
    described = [c["description"] for h in plan["hosts"] for c in h["changes"]]
    assert any("table" in d for d in described), described
    r = wm(lab, "apply", "--yes")
    assert r.code == 0, r.out + r.err
    ip = addresses(lab)
    assert tcp(lab, "lab1", ip["lab2"], 5432) == "open"
    assert tcp(lab, "lab3", ip["lab2"], 5432) == "open"
    assert tcp(lab, "lab1", ip["lab2"], 5433) == "timeout"  # a listener, but not allowed
    assert tcp(lab, "lab4", ip["lab2"], 5432) == "timeout"
    lab.exec("lab4", ["ping", "-c", "1", "-W", "3", ip["lab2"]])  # ping between all nodes stays
    r = wm(lab, "policy", "verify", "--json")
    report = json.loads(r.out)
    assert r.code == 0 and report["ok"], report
    seen = {(x["from"], x["to"], x["probe"]): x["observed"] for x in report["results"]}
    assert seen[("lab1", "lab2", "tcp/5432")] == "allowed"
    assert seen[("lab4", "lab2", "tcp/5432")] == "denied"
    assert seen[("lab1", "lab2", "tcp/5433")] == "denied"
    assert all(not x["mismatch"] for x in report["results"])
    assert json.loads(wm(lab, "plan", "--json").out)["up_to_date"]


def test_joining_a_group_changes_set_elements_only(lab: Lab) -> None:
    """2. lab4 joins app: only set elements change on lab2; a long-lived TCP stream lab1 → lab2 and
    a 2 ms ping lab1 → lab2 go on without a loss."""
    set_groups(lab, {"lab1": ["app"], "lab3": ["app"], "lab2": ["db"], "lab4": ["app"]})
    set_policy(lab, JOINED)
    r = wm(lab, "plan", "--json")
    assert r.code == 0, r.err
    plan = json.loads(r.out)
    for host in plan["hosts"]:
        kinds = {c["kind"] for c in host["changes"]}
        assert kinds <= {"add_elements", "remove_elements", "boot_file_change", "write_config"}, (
            host
        )
    assert any(c["kind"] == "add_elements" for h in plan["hosts"] for c in h["changes"])
    ip = addresses(lab)
    stream = subprocess.Popen(
        lab.exec_argv("lab1", ["python3", "-c", STREAM, ip["lab2"], "5432", "6"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    probe = PingProbe(lab, "lab1", ip["lab2"]).start()
    try:
        time.sleep(1)
        r = wm(lab, "apply", "--yes")
        assert r.code == 0, r.out + r.err
        out, err = stream.communicate(timeout=60)
        time.sleep(0.3)
    finally:
        count = probe.stop()
    assert stream.returncode == 0, out + err  # every byte sent arrived, on one connection
    assert count.lost == () and count.sent > 1000, count
    assert tcp(lab, "lab4", ip["lab2"], 5432) == "open"


def _nft(lab: Lab, host: str, script: str) -> str:
    return lab.exec(host, ["sh", "-c", script]).stdout


def test_a_hand_edit_is_found_and_undone_and_other_tables_are_left_alone(lab: Lab) -> None:
    """3."""
    _nft(lab, "lab2", "nft add rule inet wiremesh mesh tcp dport 9999 accept")
    _nft(
        lab,
        "lab2",
        "nft add table inet other; "
        "nft add chain inet other c '{ type filter hook input priority 10; policy accept; }'; "
        "nft add rule inet other c counter",
    )
    plan = json.loads(wm(lab, "plan", "--json", "lab2").out)
    described = [c["description"] for c in plan["hosts"][0]["changes"]]
    assert any("hand-edited" in d for d in described), described
    r = wm(lab, "apply", "--yes")
    assert r.code == 0, r.out + r.err
    ours = _nft(lab, "lab2", "nft list table inet wiremesh")
    assert "9999" not in ours
    other = _nft(lab, "lab2", "nft list table inet other")
    assert "counter packets" in other  # still there, still counting
    assert json.loads(wm(lab, "plan", "--json").out)["up_to_date"]


def test_a_failing_policy_test_stops_apply_before_any_host(lab: Lab) -> None:
    """4."""
    before_inventory = lab.inventory_path.read_bytes()
    tables = {h: _nft(lab, h, "nft list table inet wiremesh") for h in ("lab1", "lab2")}
    set_policy(
        lab,
        JOINED.replace(
            'expect = "allow" },\n  { from = "lab1", to = "lab2", port = "tcp/5433"',
            'expect = "allow" },\n  { from = "lab4", to = "lab2", port = "tcp/22", expect = "allow" },'
            '\n  { from = "lab1", to = "lab2", port = "tcp/5433"',
        ),
    )
    assert "tcp/22" in lab.inventory_path.read_text()
    edited = lab.inventory_path.read_bytes()
    r = wm(lab, "apply", "--yes")
    assert r.code == 2, r.out + r.err
    flat = " ".join(r.err.split())
    assert "test 3 (lab4 → lab2 tcp/22) expects allow" in flat, flat
    assert "the default deny decided" in flat, flat
    assert lab.inventory_path.read_bytes() == edited
    assert {h: _nft(lab, h, "nft list table inet wiremesh") for h in tables} == tables
    assert wm(lab, "policy", "check").code == 1
    lab.inventory_path.write_bytes(before_inventory)
    assert wm(lab, "policy", "check").code == 0


def test_the_guard_keeps_overlay_ports_off_the_underlay_and_undoes_what_cuts_ssh(lab: Lab) -> None:
    """5. k3s preset with the guard: 6443 answers on the overlay, not on the underlay. A guard on
    the SSH port (forced on purpose) is rolled back by the host itself, and apply says so."""
    assert wm(lab, "node", "set", "lab2", "--k3s-role", "server").code == 0
    assert wm(lab, "node", "set", "lab1", "--k3s-role", "agent").code == 0
    set_policy(
        lab, JOINED.replace('default = "deny"', 'default = "deny"\npresets = ["k3s"]\nguard = true')
    )
    plan = json.loads(wm(lab, "plan", "--json").out)
    guarded = [
        h["name"] for h in plan["hosts"] if any(c["kind"] == "guard_change" for c in h["changes"])
    ]
    assert "lab2" in guarded, plan
    r = wm(lab, "apply", "--yes", "--confirm-timeout", "20")
    assert r.code == 0, r.out + r.err
    ip = addresses(lab)
    assert tcp(lab, "lab1", ip["lab2"], 6443) == "refused"  # reachable (no k3s listens): a reset
    assert tcp(lab, "lab1", "198.51.100.12", 6443) == "timeout"  # the underlay: dropped
    assert tcp(lab, "lab1", "198.51.100.12", 22) == "open"  # ssh on the underlay still works
    assert json.loads(wm(lab, "plan", "--json").out)["up_to_date"]
    # Now guard lab3's SSH port on purpose.
    cut = JOINED.replace(
        'rules = [{ from = "app", to = "db", ports = "tcp/5432" }]',
        'guard = true\nrules = [{ from = "app", to = "db", ports = "tcp/5432" },\n'
        '  { from = "*", to = "lab3", ports = "tcp/22", overlay_only = true }]',
    )
    set_policy(lab, cut)
    r = wm(lab, "apply", "--yes")
    assert r.code == 2 and "covers its SSH port 22" in " ".join(r.err.split()), r.out + r.err
    started = time.monotonic()
    r = wm(lab, "apply", "--yes", "--force", "--confirm-timeout", "8")
    took = time.monotonic() - started
    flat = " ".join((r.out + r.err).split())
    assert r.code == 1, flat
    assert "FAILED lab3" in flat and "rolled back firewall change" in flat, flat
    assert took < 8 + 60, took
    assert tcp(lab, "lab1", "198.51.100.13", 22) == "open"  # the host undid it by itself
    table = _nft(lab, "lab3", "nft list table inet wiremesh")
    guard = table.split("chain guard", 1)[1] if "chain guard" in table else ""
    assert "dport 22" not in guard, table  # the guard as before: without the SSH port
    set_policy(lab, JOINED)
    assert wm(lab, "node", "set", "lab2", "--clear", "k3s_role").code == 0
    assert wm(lab, "node", "set", "lab1", "--clear", "k3s_role").code == 0
    r = wm(lab, "apply", "--yes")
    assert r.code == 0, r.out + r.err
    assert json.loads(wm(lab, "plan", "--json").out)["up_to_date"]
