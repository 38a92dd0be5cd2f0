"""The policy's nftables side against real nft (root), in throwaway namespaces: every compiled
ruleset loads and reads back equal, element-only transactions touch no rule, hand edits are found,
other tables are left alone, the boot hook loads the table (and fails closed), commit-confirmed
rolls back unless confirmed, and packets between two namespaces meet the policy."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.nft_host import NsHost, ns_host
from tests.policy_strategies import PROBES, meshes, packet, source_address
from wiremesh.codec.inventory_toml import loads
from wiremesh.codec.nft_host import parse_probe, parse_read
from wiremesh.codec.nft_json import parse_listing
from wiremesh.codec.nftables import TRAILER, full_transaction, render, transaction
from wiremesh.model.inventory import Inventory
from wiremesh.model.names import NodeName
from wiremesh.model.nft import HostFirewall, ObservedTable
from wiremesh.model.nft_changes import UnknownRule, UnknownSet
from wiremesh.model.nft_diff import diff, element_only
from wiremesh.model.nft_eval import Verdict, evaluate_table
from wiremesh.model.nft_host import UndoOutcome
from wiremesh.model.policy.compile import compile_inventory
from wiremesh.model.policy.evaluate import decide
from wiremesh.model.policy.ports import Probe, Proto
from wiremesh.model.policy.resolve import resolve
from wiremesh.model.policy.verify import VerifyResult, cases
from wiremesh.remote import nft

pytestmark = pytest.mark.root

IF = "wg0"
LIST = "nft -j list table inet wiremesh"

INVENTORY = """
version = 1
[mesh]
name = "prod"
cidr = "10.0.0.0/24"
cidr6 = "fd00:77::/64"

[[node]]
name = "app-1"
groups = ["app"]
[[node]]
name = "app-2"
groups = ["app"]
allowed_ips = ["172.16.5.0/24"]
[[node]]
name = "db-1"
groups = ["db"]
[[node]]
name = "k-1"
k3s_role = "server"
[[node]]
name = "k-2"
k3s_role = "agent"

[policy]
default = "deny"
presets = ["k3s"]
guard = true
rules = [
  { from = "app", to = "db", ports = "tcp/5432" },
  { from = "*", to = "db", ports = ["tcp/22"], action = "deny" },
]
"""


def inventory(text: str = INVENTORY) -> Inventory:
    """The test inventory, loaded as wiremesh loads it."""
    return loads(text).inventory


def firewall(inv: Inventory, name: str) -> HostFirewall:
    """A node's compiled table (which must exist)."""
    fw = compile_inventory(inv)[NodeName(name)]
    assert fw is not None
    return fw


def observe(host: NsHost) -> ObservedTable | None:
    """Our table on ``host``, read with the read snippet."""
    state = parse_read(host.ok(nft.read(IF)))
    assert state.error is None, state.error
    return state.table


def present(host: NsHost) -> ObservedTable:
    """Our table on ``host``, which must be there."""
    table = observe(host)
    assert table is not None
    return table


def load(host: NsHost, text: str) -> None:
    """Load a transaction with the load snippet."""
    host.ok(nft.load(IF), text)


@pytest.fixture(scope="module")
def host() -> Iterator[NsHost]:
    """One throwaway host for the tests that need only one."""
    with ns_host() as made:
        yield made


@pytest.fixture
def clean(host: NsHost) -> NsHost:
    """The module's host with no ruleset at all."""
    host.ok("nft flush ruleset; rm -rf /run/wiremesh /etc/wireguard/*")
    return host


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(meshes(max_nodes=4), st.integers(0, 2**32))
def test_nft_loads_and_reads_back_every_compiled_ruleset(
    host: NsHost, inv: Inventory, seed: int
) -> None:
    """For random meshes and policies: ``nft -c -f`` accepts each host's ruleset, ``nft -f`` loads
    it, ``nft -j list`` reads back exactly the compiled table (empty diff), and the interpreter,
    run on what the kernel reports, agrees with the evaluator."""
    resolved = resolve(inv)
    assert resolved is not None
    rnd = random.Random(seed)
    for node, fw in compile_inventory(inv).items():
        if fw is None:
            continue
        text = render(fw)
        host.ok("nft -c -f -", text)
        load(host, text)
        observed = parse_listing(host.ok(LIST))
        assert diff(fw, observed) == [], [c.describe() for c in diff(fw, observed)]
        table = observed.normal()
        assert table == fw.table
        for _ in range(10):
            src = rnd.choice([n for n in inv.nodes if n.name != node])
            probe = rnd.choice(PROBES)
            got = evaluate_table(table, packet(IF, source_address(rnd, src), probe))
            assert (got is Verdict.ACCEPT) == decide(resolved, src.name, node, probe).allowed


def test_element_only_transaction_keeps_every_rule(clean: NsHost) -> None:
    """A node joining a group: on another host, only elements change; the rules keep their
    handles and counters (they were not replaced), and the result reads back as the new table."""
    before = inventory()
    after = inventory(
        INVENTORY.replace('name = "app-1"\n', 'name = "app-1"\n', 1).replace(
            '[[node]]\nname = "k-2"', '[[node]]\nname = "k-2"\ngroups = ["app"]'
        )
    )
    load(clean, render(firewall(before, "db-1")))
    clean.ok("nft list table inet wiremesh > /dev/null")
    rules_before = [(r.handle, r.text) for c in present(clean).chains for r in c.rules]
    wanted = firewall(after, "db-1")
    changes = diff(wanted, observe(clean))
    assert element_only(changes), [c.describe() for c in changes]
    assert [c.describe() for c in changes] == [
        "set app: add 10.0.0.5",
        "set app: add fd00:77::5",
    ]
    text = transaction(wanted, observe(clean), changes)
    assert text is not None and "delete table" not in text
    load(clean, text)
    observed = present(clean)
    assert diff(wanted, observed) == []
    rules_after = [(r.handle, r.text) for c in observed.chains for r in c.rules]
    assert rules_after == rules_before


def test_hand_edits_are_found_and_undone(clean: NsHost) -> None:
    """A rule, a set element and a set added by hand show up in the diff; the full replacement
    removes them."""
    fw = firewall(inventory(), "db-1")
    load(clean, render(fw))
    clean.ok(
        "nft insert rule inet wiremesh mesh ip saddr 203.0.113.9 tcp dport 5432 accept && "
        "nft add element inet wiremesh g_app_v4 '{ 10.0.0.99 }' && "
        "nft add set inet wiremesh mine '{ type ipv4_addr; }'"
    )
    changes = diff(fw, observe(clean))
    texts = [c.describe() for c in changes]
    assert "set app: remove 10.0.0.99" in texts
    assert any(isinstance(c, UnknownSet) and c.set_name == "mine" for c in changes)
    unknown = [c for c in changes if isinstance(c, UnknownRule)]
    assert [c.describe() for c in unknown] == [
        "unknown rule in wiremesh table (hand-edited?): chain mesh: "
        "ip saddr 203.0.113.9 tcp dport 5432 accept"
    ]
    text = transaction(fw, observe(clean), changes)
    assert text is not None and "delete table inet wiremesh" in text
    load(clean, text)
    assert diff(fw, observe(clean)) == []


def _other_rule(host: NsHost) -> dict[str, Any]:
    """The one rule of ``table inet other``: its handle, and its counter's values."""
    items = json.loads(host.ok("nft -j list table inet other"))["nftables"]
    (rule,) = [i["rule"] for i in items if "rule" in i]
    (counter,) = [e["counter"] for e in rule["expr"] if "counter" in e]
    return {"handle": rule["handle"], "counter": counter}


def test_other_tables_are_left_alone(clean: NsHost) -> None:
    """A table that is not ours keeps its rule (same handle) and its counter through our full
    replacement, element-only change and removal."""
    clean.ok(
        "nft add table inet other && "
        "nft add chain inet other c '{ type filter hook input priority 0; policy accept; }' && "
        "nft add rule inet other c counter && "
        "ping -c 3 -i 0.2 -q 127.0.0.1 >/dev/null"
    )
    counted = _other_rule(clean)
    assert counted["counter"]["packets"] >= 6
    fw = firewall(inventory(), "db-1")
    load(clean, render(fw))
    wanted = firewall(inventory(INVENTORY.replace('groups = ["app"]\nallowed', "allowed")), "db-1")
    load(clean, transaction(wanted, observe(clean), diff(wanted, observe(clean))) or "")
    clean.ok(nft.remove(IF))
    assert observe(clean) is None
    rule = _other_rule(clean)
    assert rule["handle"] == counted["handle"]
    assert rule["counter"]["packets"] >= counted["counter"]["packets"]


def test_incomplete_transactions_are_not_loaded(clean: NsHost) -> None:
    """A transaction cut short (here: after the line that deletes our table) is refused with exit
    6, and our table stays."""
    text = render(firewall(inventory(), "db-1"))
    load(clean, text)
    cut = "\n".join(text.splitlines()[:3]) + "\n"
    for snippet in (nft.load(IF), nft.persist(IF), nft.begin_confirmed(IF, "cut", 5)):
        done = clean.sh(snippet, cut)
        assert done.returncode == 6, (done.returncode, done.stderr)
        assert observe(clean) is not None
    # The boot file must be a whole table: an element-only change is refused.
    elements = "\n".join(
        [text.splitlines()[0], "add element inet wiremesh all_v4 { 10.0.0.9 }", TRAILER]
    )
    done = clean.sh(nft.persist(IF), elements + "\n")
    assert done.returncode == 1 and "not a whole wiremesh table" in done.stderr
    assert clean.sh(f"test -e {nft.boot_file(IF)}").returncode == 1


def test_boot_hook_loads_the_table_and_fails_closed(clean: NsHost) -> None:
    """The PreUp hook: ``wg-quick up`` loads the kept table before the interface exists; with a
    table nft refuses, wg-quick stops and the interface stays down."""
    text = render(firewall(inventory(), "db-1"))
    clean.ok(nft.persist(IF), text)
    mode = clean.ok(f"stat -c '%a' {nft.boot_file(IF)}; head -n 1 {nft.boot_file(IF)}")
    assert mode.splitlines() == ["600", text.splitlines()[0]]
    conf = f"[Interface]\nPrivateKey = $(wg genkey)\nListenPort = 51820\n{nft.boot_hook(IF)}\n"
    clean.ok(f"umask 077; cat > /etc/wireguard/{IF}.conf <<EOF\n{conf}EOF\nwg-quick up {IF}")
    assert diff(firewall(inventory(), "db-1"), observe(clean)) == []
    clean.ok(f"wg-quick down {IF}; nft delete table inet wiremesh")
    clean.ok(f"echo 'table inet wiremesh {{ chain x {{ bogus }} }}' > {nft.boot_file(IF)}")
    done = clean.sh(f"wg-quick up {IF}")
    assert done.returncode != 0
    assert clean.sh(f"ip link show {IF}").returncode != 0
    assert observe(clean) is None


def _wait_until(check: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_unconfirmed_guard_change_is_rolled_back(clean: NsHost) -> None:
    """Begin a guard change in a "session" (its own process group, as sshd makes one) that is then
    hung up and killed; nobody confirms; the host puts the old table back by itself within N s, and
    says so afterwards."""
    inv = inventory()
    old = firewall(inventory(INVENTORY.replace("guard = true\n", "")), "k-1")
    new = firewall(inv, "k-1")
    load(clean, render(old))
    session = subprocess.Popen(
        [
            "nsenter",
            "-t",
            str(clean.pid),
            "--net",
            "--mount",
            "--pid",
            "sh",
            "-c",
            nft.begin_confirmed(IF, "t1", 2) + "\nsleep 60\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert session.stdin is not None and session.stdout is not None
    session.stdin.write(render(new))
    session.stdin.close()
    assert session.stdout.readline().startswith("pending t1 ")
    begun = time.monotonic()
    os.killpg(session.pid, signal.SIGHUP)
    os.killpg(session.pid, signal.SIGKILL)
    session.wait(timeout=10)
    assert diff(new, observe(clean)) == []
    _wait_until(lambda: diff(old, observe(clean)) == [], 10)
    assert time.monotonic() - begun < 2 + 3  # the deadline, and some slack for a loaded machine
    state = parse_read(clean.ok(nft.read(IF)))
    assert state.pending == ()
    assert state.last is not None and state.last.outcome is UndoOutcome.ROLLED_BACK
    assert state.last.token == "t1"
    done = clean.sh(nft.confirm(IF, "t1"))
    assert done.returncode == 3 and done.stdout.startswith("rolled-back t1 ")


def test_confirmed_guard_change_stays(clean: NsHost) -> None:
    """Confirmed over a new "connection" (a new process), the change stays after the deadline; a
    second change while one is pending is refused (5); a change nft refuses arms nothing (1)."""
    new = firewall(inventory(), "k-1")
    begun = clean.sh(nft.begin_confirmed(IF, "t2", 2), render(new))
    assert begun.returncode == 0, begun.stderr
    busy = clean.sh(nft.begin_confirmed(IF, "t3", 2), render(new))
    assert busy.returncode == 5 and "t2" in busy.stderr
    done = clean.sh(nft.confirm(IF, "t2"))
    assert (done.returncode, done.stdout.strip()) == (0, "confirmed t2")
    time.sleep(3)
    assert diff(new, observe(clean)) == []
    state = parse_read(clean.ok(nft.read(IF)))
    assert state.last is not None and state.last.outcome is UndoOutcome.CONFIRMED
    assert clean.ok("ps -eo args").count("wiremesh-undo") == 0
    bad = full_transaction(None).replace("delete table inet wiremesh", "delete table inet nowhere")
    refused = clean.sh(nft.begin_confirmed(IF, "t4", 2), bad)
    assert refused.returncode == 1
    assert parse_read(clean.ok(nft.read(IF))).pending == ()
    assert diff(new, observe(clean)) == []
    assert clean.sh(nft.confirm(IF, "t4")).returncode == 4


def test_rollback_now_and_from_no_table(clean: NsHost) -> None:
    """With no table before, the undo deletes ours; ``rollback`` undoes at once."""
    new = firewall(inventory(), "k-1")
    assert clean.sh(nft.begin_confirmed(IF, "t5", 30), render(new)).returncode == 0
    assert observe(clean) is not None
    done = clean.sh(nft.rollback(IF, "t5"))
    assert (done.returncode, done.stdout.strip()) == (0, "rolled-back t5")
    assert observe(clean) is None
    assert clean.sh(nft.confirm(IF, "t5")).returncode == 3


PACKETS = """
version = 1
[mesh]
name = "lab"
cidr = "10.0.0.0/24"

[[node]]
name = "app-1"
groups = ["app"]
k3s_role = "agent"
[[node]]
name = "db-1"
groups = ["db"]
k3s_role = "server"

[policy]
default = "deny"
presets = ["k3s"]
guard = true
rules = [{ from = "app", to = "db", ports = ["tcp/5432", "tcp/6432"] }]
tests = [
  { from = "app-1", to = "db-1", port = "tcp/5432", expect = "allow" },
  { from = "app-1", to = "db-1", port = "tcp/5433", expect = "deny" },
  { from = "app-1", to = "db-1", port = "icmp", expect = "allow" },
]
"""

LISTEN = (
    "import socket, sys, time\n"
    "socks = []\n"
    "for port in sys.argv[1:]:\n"
    "    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "    s.bind(('0.0.0.0', int(port))); s.listen(16); socks.append(s)\n"
    "print('listening', flush=True)\n"
    "time.sleep(120)\n"
)


def test_packets_meet_the_policy() -> None:
    """Two namespaces joined by a veth named wg0 (standing in for the mesh interface) and one named
    eth0 (the public side): allowed ports connect (a listener) or are refused (none), a denied port
    times out, ping works, the guard drops 6443 on eth0 but not on wg0, and the probe snippet with
    the verify cases reports exactly what the policy says."""
    inv = inventory(PACKETS)
    resolved = resolve(inv)
    assert resolved is not None
    with ns_host() as client, ns_host() as server:
        for link, prefix in (("wg0", "10.0.0"), ("eth0", "10.99.0")):
            subprocess.run(
                [
                    "ip",
                    "-n",
                    client.netns,
                    "link",
                    "add",
                    link,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    link,
                    "netns",
                    server.netns,
                ],
                check=True,
            )
            client.ok(f"ip addr add {prefix}.1/24 dev {link} && ip link set {link} up")
            server.ok(f"ip addr add {prefix}.2/24 dev {link} && ip link set {link} up")
        load(server, render(firewall(inv, "db-1")))
        listener = subprocess.Popen(
            [
                "nsenter",
                "-t",
                str(server.pid),
                "--net",
                "--mount",
                "--pid",
                "python3",
                "-c",
                LISTEN,
                "5432",
                "6443",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert listener.stdout is not None and listener.stdout.readline() == "listening\n"
            overlay, public = IPv4Address("10.0.0.2"), IPv4Address("10.99.0.2")
            targets = [
                nft.ProbeTarget(overlay, Probe(Proto.TCP, 5432)),
                nft.ProbeTarget(overlay, Probe(Proto.TCP, 6432)),
                nft.ProbeTarget(overlay, Probe(Proto.TCP, 5433)),
                nft.ProbeTarget(overlay, Probe(Proto.TCP, 6443)),
                nft.ProbeTarget(overlay, Probe(Proto.ICMP)),
                nft.ProbeTarget(overlay, Probe(Proto.UDP, 8472)),
                nft.ProbeTarget(public, Probe(Proto.TCP, 6443)),
                nft.ProbeTarget(public, Probe(Proto.TCP, 5432)),
            ]
            seen = parse_probe(client.ok(nft.probe(targets, timeout=1)))
            assert seen == {
                ("tcp", overlay, 5432): "open",
                ("tcp", overlay, 6432): "refused",
                ("tcp", overlay, 5433): "timeout",
                ("tcp", overlay, 6443): "open",
                ("icmp", overlay, 0): "reply",
                ("udp", overlay, 8472): "notprobed",
                ("tcp", public, 6443): "timeout",
                ("tcp", public, 5432): "open",
            }
            mine = [c for c in cases(resolved) if c.source == "app-1"]
            assert {c.why for c in mine} >= {"test 1", "test 2", "test 3", "rule 1 sample"}
            out = client.ok(nft.probe([nft.ProbeTarget(c.address, c.probe) for c in mine], 1))
            got = parse_probe(out)
            results = [
                VerifyResult(c, got[(str(c.probe.proto), c.address, c.probe.port)]) for c in mine
            ]
            assert not [r.describe() for r in results if r.mismatch]
            assert any(r.result == "timeout" for r in results)
        finally:
            listener.kill()
            listener.wait(timeout=10)
