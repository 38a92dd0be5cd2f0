"""The policy's nftables side (pure): compiled tables, their text, the read-back parser, the diff and
its transactions, the host snippets' outputs."""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network, ip_network

import pytest

from tests.nft_text import as_observed
from wiremesh.codec.inventory_toml import loads
from wiremesh.codec.nft_host import parse_probe, parse_read
from wiremesh.codec.nft_json import parse_listing
from wiremesh.codec.nftables import (
    TRAILER,
    boot_diff,
    full_transaction,
    render,
    render_rule,
    transaction,
)
from wiremesh.errors import ValidationError
from wiremesh.model.inventory import Inventory
from wiremesh.model.names import NodeName
from wiremesh.model.nft import (
    GUARD,
    MESH,
    AddrRange,
    HostFirewall,
    NftChain,
    NftRule,
    NftTable,
    ObservedChain,
    ObservedRule,
    ObservedTable,
)
from wiremesh.model.nft_changes import GuardChange
from wiremesh.model.nft_diff import diff, element_only, needs_confirm
from wiremesh.model.nft_host import UndoOutcome
from wiremesh.model.policy.compile import compile_inventory, guard_ssh_conflicts
from wiremesh.model.policy.evaluate import Decision
from wiremesh.model.policy.ports import Probe, Proto
from wiremesh.model.policy.rules import Action
from wiremesh.model.policy.verify import Observed, VerifyCase, VerifyResult
from wiremesh.remote import nft

SMALL = """
version = 1
[mesh]
cidr = "10.0.0.0/24"
[[node]]
name = "app-1"
groups = ["app"]
[[node]]
name = "db-1"
groups = ["db"]
allowed_ips = ["172.16.5.0/24"]
[policy]
default = "deny"
guard = true
rules = [{ from = "app", to = "db", ports = ["tcp/5432", "tcp/6000-6010"], overlay_only = true }]
"""

DB1 = """\
# wiremesh: managed table inet wiremesh ('wiremesh apply' replaces it; edits are undone)
table inet wiremesh {}
delete table inet wiremesh
table inet wiremesh {
	set all_v4 {
		type ipv4_addr
		flags interval
		elements = { 10.0.0.1, 10.0.0.2, 172.16.5.0/24 }
	}

	set g_app_v4 {
		type ipv4_addr
		flags interval
		elements = { 10.0.0.1 }
	}

	chain input {
		type filter hook input priority filter; policy accept;
		iifname "wg0" jump mesh
	}

	chain mesh {
		ct state established,related accept
		ip saddr @g_app_v4 tcp dport 5432 counter accept comment "rule 1"
		ip saddr @g_app_v4 tcp dport 6000-6010 counter accept comment "rule 1"
		ip saddr @all_v4 icmp type echo-request counter accept comment "built-in ping rule"
		counter drop comment "default deny"
	}

	chain guard {
		type filter hook input priority filter; policy accept;
		iifname { "lo", "wg0" } return
		tcp dport 5432 counter drop comment "guard: overlay only"
		tcp dport 6000-6010 counter drop comment "guard: overlay only"
	}
}
# wiremesh: end of transaction
"""


def inv(text: str = SMALL) -> Inventory:
    """Load an inventory."""
    return loads(text).inventory


def fw_of(inventory: Inventory, name: str) -> HostFirewall:
    """A node's compiled table, which must exist."""
    found = compile_inventory(inventory)[NodeName(name)]
    assert found is not None
    return found


# -- compiling and rendering ------------------------------------------------------------------------


def test_rendered_table() -> None:
    """The whole text of a small host: sets, the mesh chain, the guard (golden)."""
    assert render(fw_of(inv(), "db-1")) == DB1


def test_default_allow_installs_nothing_without_deny_rules() -> None:
    """``default = "allow"``: no table at all, unless a deny rule or the guard applies to the host."""
    allow = SMALL.replace('default = "deny"\nguard = true\n', "").replace(
        ", overlay_only = true", ""
    )
    assert compile_inventory(inv(allow)) == {"app-1": None, "db-1": None}
    deny_one = allow.replace(
        'ports = ["tcp/5432", "tcp/6000-6010"]', 'ports = "tcp/22", action = "deny"'
    )
    compiled = compile_inventory(inv(deny_one))
    assert compiled[NodeName("app-1")] is None
    db = compiled[NodeName("db-1")]
    assert db is not None and db.table.chain(MESH) is not None
    mesh = db.table.chain(MESH)
    assert mesh is not None and [r.comment for r in mesh.rules] == [None, "rule 1"]
    assert mesh.rules[-1].verdict == "drop"  # the ping rule after it changes nothing: left out


def test_ipv6_rules_exist_when_the_mesh_has_ipv6_anywhere() -> None:
    """An IPv6 allowed_ips on one node gives every host IPv6 sets and rules."""
    dual = SMALL.replace('allowed_ips = ["172.16.5.0/24"]', 'allowed_ips = ["fd10::/64"]')
    table = fw_of(inv(dual), "db-1").table
    assert [s.name for s in table.sets] == ["all_v4", "all_v6", "g_app_v4", "g_app_v6"]
    all6 = table.get_set("all_v6")
    assert all6 is not None and all6.elements == {ip_network("fd10::/64")}


def test_guard_covers_the_hosts_own_overlay_only_ports() -> None:
    """The k3s preset's overlay-only ports: servers guard all four, agents kubelet and VXLAN; the
    preset's pod interfaces are exempt."""
    text = """
version = 1
[mesh]
cidr = "10.0.0.0/24"
[[node]]
name = "s"
k3s_role = "server"
[[node]]
name = "a"
k3s_role = "agent"
[[node]]
name = "x"
[policy]
presets = ["k3s"]
guard = true
"""
    compiled = compile_inventory(inv(text))
    server, agent = compiled[NodeName("s")], compiled[NodeName("a")]
    assert server is not None and agent is not None
    assert [str(p) for p in server.guard] == ["tcp/2379-2380", "tcp/6443", "tcp/10250", "udp/8472"]
    assert [str(p) for p in agent.guard] == ["tcp/10250", "udp/8472"]
    assert agent.exempt == ("cni0", "flannel.1", "flannel-v6.1")
    assert compiled[NodeName("x")] is None  # default allow, no guard there


def test_guard_on_the_ssh_port_is_reported() -> None:
    """A guard that covers a node's SSH port (from its ssh target, else 22)."""
    text = SMALL.replace('ports = ["tcp/5432", "tcp/6000-6010"]', 'ports = ["tcp/20-30"]')
    problems = [p.message for p in guard_ssh_conflicts(inv(text))]
    assert problems == ["node 'db-1': the guard would drop tcp/20-30, which covers its SSH port 22"]
    moved = text.replace('name = "db-1"\n', 'name = "db-1"\nssh = "root@db-1:2222"\n')
    assert guard_ssh_conflicts(inv(moved)) == []


@pytest.mark.parametrize(
    "rule",
    [
        NftRule(comment='x" accept; drop "'),
        NftRule(saddr_set="a b"),
        NftRule(iifnames=frozenset({'wg0" accept'})),
        NftRule(verdict="goto"),
        NftRule(proto="tcp", dports=(0, 5)),
        NftRule(verdict="jump", target="x;y"),
    ],
)
def test_render_refuses_unvalidated_text(rule: NftRule) -> None:
    """Nothing reaches an nft script unchecked."""
    if rule.saddr_set is not None:
        rule = replace(rule, family=4)
    with pytest.raises(ValueError, match="refusing to write"):
        render_rule(rule)


# -- reading back ---------------------------------------------------------------------------------


def _rule(chain: str, exprs: list[object], handle: int, comment: str | None = None) -> object:
    body: dict[str, object] = {"family": "inet", "table": "wiremesh", "chain": chain}
    body.update({"handle": handle, "expr": exprs})
    if comment:
        body["comment"] = comment
    return {"rule": body}


def _match(left: object, right: object, op: str = "==") -> object:
    return {"match": {"op": op, "left": left, "right": right}}


SADDR = {"payload": {"protocol": "ip", "field": "saddr"}}
DPORT = {"payload": {"protocol": "tcp", "field": "dport"}}
CT = {"ct": {"key": "state"}}
COUNTED = {"counter": {"packets": 1, "bytes": 60}}
LISTING = {
    "nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "wiremesh", "handle": 4}},
        {
            "set": {
                "family": "inet",
                "name": "g_app_v4",
                "table": "wiremesh",
                "type": "ipv4_addr",
                "handle": 3,
                "flags": ["interval"],
                "elem": [
                    "10.0.0.1",
                    {"prefix": {"addr": "172.16.5.0", "len": 24}},
                    {"range": ["10.0.0.8", "10.0.0.9"]},
                    {"range": ["10.0.0.20", "10.0.0.22"]},
                ],
            }
        },
        {
            "map": {
                "family": "inet",
                "name": "m",
                "table": "wiremesh",
                "type": "ipv4_addr",
                "map": "verdict",
            }
        },
        {"chain": {"family": "inet", "table": "wiremesh", "name": "mesh", "handle": 2}},
        _rule(
            "mesh",
            [_match({"ct": {"key": "state"}}, ["established", "related"], "in"), {"accept": None}],
            7,
        ),
        _rule(
            "mesh",
            [
                _match(SADDR, "@g_app_v4"),
                _match(DPORT, {"range": [2379, 2380]}),
                {"counter": {"packets": 3, "bytes": 180}},
                {"accept": None},
            ],
            8,
            "rule 1",
        ),
        _rule(
            "mesh",
            [
                _match(SADDR, "203.0.113.9"),
                {"counter": {"packets": 1, "bytes": 60}},
                {"accept": None},
            ],
            9,
        ),
        _rule("mesh", [_match(DPORT, 22), {"log": {"prefix": "x"}}, {"drop": None}], 10),
        {"flowtable": {"family": "inet", "name": "ft", "table": "wiremesh"}},
        {"chain": {"family": "inet", "table": "other", "name": "c", "handle": 1}},
    ]
}


def test_listing_is_parsed_strictly() -> None:
    """Known shapes become rules; anything else is kept as unknown, with readable text and its
    counter; maps and flowtables are reported; other tables' objects are ignored."""
    table = parse_listing(json.dumps(LISTING))
    (app,) = [s for s in table.sets if s.name == "g_app_v4"]
    assert app.family == 4 and app.interval
    assert app.elements == {
        ip_network("10.0.0.1/32"),
        ip_network("172.16.5.0/24"),
        ip_network("10.0.0.8/31"),
        AddrRange(IPv4Address("10.0.0.20"), IPv4Address("10.0.0.22")),
    }
    (mapped,) = [s for s in table.sets if s.name == "m"]
    assert mapped.family is None
    assert table.others == ("flowtable ft",)
    (mesh,) = table.chains
    ct, ports, saddr, logged = mesh.rules
    assert ct.rule == NftRule(ct_states=frozenset({"established", "related"}))
    assert ports.rule == NftRule(
        family=4,
        saddr_set="g_app_v4",
        proto="tcp",
        dports=(2379, 2380),
        counter=True,
        comment="rule 1",
    )
    assert (ports.handle, ports.packets, ports.bytes) == (8, 3, 180)
    assert saddr.rule is None and saddr.text == "ip saddr 203.0.113.9 counter accept"
    assert saddr.packets == 1
    assert logged.rule is None and logged.text.startswith("tcp dport 22 {")
    assert table.normal() is None


def test_listing_that_is_not_json() -> None:
    """A broken answer is an error that says what was expected."""
    with pytest.raises(ValidationError, match="libnftables-json"):
        parse_listing("Error: syntax error")


# -- diff and transactions -------------------------------------------------------------------------


def test_diff_of_an_absent_table() -> None:
    """No table: create it (and the guard, commit-confirmed); no wanted table: remove ours."""
    fw = fw_of(inv(), "db-1")
    changes = diff(fw, None)
    assert [c.describe() for c in changes] == [
        "create table inet wiremesh (9 rules, 4 set elements)",
        "guard: drop tcp/5432, tcp/6000-6010 arriving on interfaces other than lo, wg0 (new)",
    ]
    assert needs_confirm(changes) and not element_only(changes)
    assert [c.kind for c in changes] == ["create_table", "guard_change"]
    assert [c.describe() for c in diff(None, as_observed(fw.table))] == [
        "remove table inet wiremesh (no policy applies to this host)"
    ]
    assert transaction(None, as_observed(fw.table), diff(None, as_observed(fw.table))) == (
        full_transaction(None)
    )
    assert diff(None, None) == []


def test_diff_of_elements_rules_and_chains() -> None:
    """Every kind of difference, described for the plan."""
    fw = fw_of(inv(), "db-1")
    table = fw.table
    mesh = table.chain(MESH)
    guard = table.chain(GUARD)
    assert mesh is not None and guard is not None
    app = table.get_set("g_app_v4")
    assert app is not None
    sets = tuple(
        replace(s, elements=frozenset({ip_network("10.0.0.9/32")})) if s is app else s
        for s in table.sets
    )
    hand = ObservedRule(None, "ip saddr 203.0.113.9 accept", 11)
    observed = ObservedTable(
        sets=as_observed(replace(table, sets=sets)).sets,
        chains=(
            ObservedChain("input", None, ()),
            ObservedChain(
                MESH,
                None,
                (ObservedRule(mesh.rules[2], ""), ObservedRule(mesh.rules[0], ""), hand),
            ),
            ObservedChain(GUARD, guard.base, tuple(ObservedRule(r, "") for r in guard.rules[:2])),
            ObservedChain("extra", None, ()),
        ),
    )
    described = [c.describe() for c in diff(fw, observed)]
    assert described == [
        "set app: remove 10.0.0.9",
        "set app: add 10.0.0.1",
        "chain input: is a regular chain, expected a base chain",
        "traffic arriving on wg0 goes to chain mesh (missing)",
        "unknown rule in wiremesh table (hand-edited?): chain mesh: ip saddr 203.0.113.9 accept",
        "rule 1: allow app → tcp/5432 (missing)",
        "built-in ping rule: allow * → icmp (missing)",
        "default deny: deny everything else (missing)",
        "guard: drop tcp/5432, tcp/6000-6010 arriving on interfaces other than lo, wg0 "
        "(was: drop tcp/5432 arriving on interfaces other than lo, wg0)",
        "unknown chain extra in wiremesh table (hand-edited?)",
    ]


def test_reordered_rules_and_element_only_transaction() -> None:
    """Same rules in another order are a change (first match decides); elements alone are changed
    without touching rules, deletions first."""
    fw = fw_of(inv(), "db-1")
    mesh = fw.table.chain(MESH)
    assert mesh is not None
    swapped = (mesh.rules[0], mesh.rules[2], mesh.rules[1], *mesh.rules[3:])
    chains = tuple(replace(c, rules=swapped) if c.name == MESH else c for c in fw.table.chains)
    observed = as_observed(replace(fw.table, chains=chains))
    assert [c.describe() for c in diff(fw, observed)] == ["chain mesh: rules out of order"]
    moved = inv(SMALL.replace('allowed_ips = ["172.16.5.0/24"]', 'allowed_ips = ["172.16.0.0/16"]'))
    after = fw_of(moved, "db-1")
    changes = diff(after, as_observed(fw.table))
    assert element_only(changes) and not needs_confirm(changes)
    assert transaction(after, as_observed(fw.table), changes) == (
        "# wiremesh: managed table inet wiremesh ('wiremesh apply' replaces it; edits are undone)\n"
        "delete element inet wiremesh all_v4 { 172.16.5.0/24 }\n"
        "add element inet wiremesh all_v4 { 172.16.0.0/16 }\n"
        f"{TRAILER}\n"
    )
    assert transaction(fw, as_observed(fw.table), []) is None


def test_boot_file_diff() -> None:
    """The boot file is compared by its sha256 with the rendered table."""
    fw = fw_of(inv(), "db-1")
    path = nft.boot_file("wg0")
    digest = hashlib.sha256(render(fw).encode()).hexdigest()
    assert boot_diff(fw, digest, path) == []
    assert [c.describe() for c in boot_diff(fw, None, path)] == [f"write {path} (new)"]
    assert [c.describe() for c in boot_diff(fw, "0" * 64, path)] == [f"write {path} (changed)"]
    assert [c.describe() for c in boot_diff(None, digest, path)] == [
        f"remove {path} (no policy applies to this host)"
    ]
    assert boot_diff(None, None, path) == []


def test_guard_summary_of_an_observed_guard_with_unknown_rules() -> None:
    """A hand-edited guard is said to be so."""
    fw = fw_of(inv(), "db-1")
    guard = fw.table.chain(GUARD)
    assert guard is not None
    hand = ObservedChain(
        GUARD, guard.base, (ObservedRule(guard.rules[0], ""), ObservedRule(None, "x"))
    )
    observed = as_observed(fw.table)
    observed = replace(observed, chains=(*observed.chains[:2], hand))
    (change,) = diff(fw, observed)
    assert isinstance(change, GuardChange)
    assert change.before == (
        "drop nothing arriving on interfaces other than lo, wg0 (and 1 rule(s) wiremesh did not write)"
    )


# -- host answers and verify -------------------------------------------------------------------------


def test_read_answer() -> None:
    """Sections of the read snippet: the table, the boot file, commit-confirmed state."""
    head = "@@wiremesh-nft "
    listing = json.dumps(
        {"nftables": [{"chain": {"family": "inet", "table": "wiremesh", "name": "mesh"}}]}
    )
    text = (
        f"{head}table\njson\n{listing}\n{head}boot\nabc123\n{head}confirm\npending t1 1700000030\n"
        f"last rolled-back t0 1700000000\nnow 1700000010\n{head}end\n"
    )
    state = parse_read(text)
    assert state.nft and state.table is not None and state.table.chains[0].name == "mesh"
    assert state.boot_sha256 == "abc123"
    assert [(p.token, p.deadline) for p in state.pending] == [("t1", 1700000030)]
    assert not state.pending[0].overdue(state.now)
    assert state.last is not None and state.last.outcome is UndoOutcome.ROLLED_BACK
    assert "rolled back firewall change t0" in state.last.describe()
    absent = parse_read(f"{head}table\nabsent\n{head}boot\nmissing\n{head}confirm\n{head}end\n")
    assert absent.table is None and absent.boot_sha256 is None and absent.error is None
    assert not parse_read(f"{head}table\nno-nft\n{head}end\n").nft
    assert parse_read(f"{head}table\nerror Operation not permitted\n{head}end\n").error == (
        "Operation not permitted"
    )
    with pytest.raises(ValidationError, match="cut short"):
        parse_read(f"{head}table\nabsent\n")


def test_probe_answer_and_verify_results() -> None:
    """Probe words map to observations; a mismatch is what the policy did not say."""
    out = "@@probe tcp 10.0.0.2 5432 refused\n@@probe icmp fd00::2 - reply\nnoise\n"
    seen = parse_probe(out)
    assert seen == {
        ("tcp", IPv4Address("10.0.0.2"), 5432): "refused",
        ("icmp", ip_network("fd00::2/128").network_address, 0): "reply",
    }
    case = VerifyCase(
        NodeName("app-1"),
        NodeName("db-1"),
        IPv4Address("10.0.0.2"),
        Probe(Proto.TCP, 5432),
        Decision(Action.DENY, None),
        "test 2",
    )
    result = VerifyResult(case, "refused")
    assert result.observed is Observed.ALLOWED and result.mismatch
    assert result.describe() == (
        "test 2: app-1 → db-1 (10.0.0.2) tcp/5432: expected deny, observed allowed (refused); "
        "the default deny decided"
    )
    assert not VerifyResult(case, "timeout").mismatch
    assert not VerifyResult(case, "notprobed").mismatch
    assert VerifyResult(case, "weird").observed is Observed.ERROR


# -- snippets ---------------------------------------------------------------------------------------


def test_snippets_are_valid_posix_sh() -> None:
    """Every snippet parses with dash (``sh -n``)."""
    snippets = [
        nft.read("wg0"),
        nft.load("wg0"),
        nft.persist("wg0"),
        nft.remove("wg0"),
        nft.begin_confirmed("wg0", "abc123", 30),
        nft.confirm("wg0", "abc123"),
        nft.rollback("wg0", "abc123"),
        nft.probe(
            [
                nft.ProbeTarget(IPv4Address("10.0.0.2"), Probe(Proto.TCP, 22)),
                nft.ProbeTarget(IPv4Address("10.0.0.2"), Probe(Proto.ICMP)),
                nft.ProbeTarget(IPv4Address("10.0.0.2"), Probe(Proto.UDP, 53)),
            ]
        ),
    ]
    for script in snippets:
        done = subprocess.run(
            ["sh", "-n"], input=script, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, (done.stderr, script)


def test_snippet_inputs_are_validated() -> None:
    """Tokens, timeouts and interface names are checked before they reach a script."""
    with pytest.raises(ValueError, match="token"):
        nft.confirm("wg0", "a;b")
    with pytest.raises(ValueError, match="3600"):
        nft.begin_confirmed("wg0", "t", 0)
    with pytest.raises(ValidationError, match="interface"):
        nft.load("wg0; rm -rf /")
    assert nft.boot_hook("wg0") == "PreUp = nft -f /etc/wireguard/wiremesh-wg0.nft"


def test_table_sizes() -> None:
    """Counts used by the size figures."""
    table = fw_of(inv(), "db-1").table
    assert (table.rule_count, table.element_count) == (9, 4)
    assert NftTable((), (NftChain("x", None, (NftRule(),)),)).rule_count == 1
    assert IPv4Network("10.0.0.0/24").num_addresses == 256
