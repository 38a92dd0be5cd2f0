"""The policy's format, validation and evaluator (pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from wiremesh.codec.inventory_toml import loads
from wiremesh.codec.inventory_write import update_text
from wiremesh.errors import ValidationError
from wiremesh.model.inventory import Inventory
from wiremesh.model.policy.evaluate import decide, failing, run_tests
from wiremesh.model.policy.ports import PortSpec, Probe, Proto
from wiremesh.model.policy.resolve import PING_RULE, ResolvedPolicy, resolve
from wiremesh.model.policy.rules import Action

HEAD = """
version = 1
[mesh]
name = "prod"
cidr = "10.0.0.0/24"

[[node]]
name = "app-1"
groups = ["app"]
[[node]]
name = "app-2"
groups = ["app", "web"]
[[node]]
name = "db-1"
groups = ["db"]
[[node]]
name = "db-2"
groups = ["db"]
[[node]]
name = "k-1"
k3s_role = "server"
[[node]]
name = "k-2"
k3s_role = "server"
[[node]]
name = "k-3"
k3s_role = "agent"
"""

POLICY = """
[policy]
default = "deny"
presets = ["k3s"]
rules = [
  { from = "app", to = "db", ports = "tcp/5433" },
  { from = "*", to = "db", ports = ["tcp/22"], action = "deny" },
  { from = ["app-1", "k3s-agents"], to = "k3s-servers", ports = ["tcp/6443", "icmp"], action = "deny" },
]
tests = [
  { from = "app-1", to = "db-1", port = "tcp/5433", expect = "allow" },
  { from = "app-1", to = "db-1", port = "tcp/5432", expect = "allow" },
  { from = "app", to = "db", port = "tcp/22", expect = "allow" },
  { from = "k-3", to = "k-1", port = "tcp/6443", expect = "allow" },
]
"""


def load(policy: str = POLICY, head: str = HEAD) -> Inventory:
    """An inventory with ``policy``."""
    return loads(head + policy).inventory


def resolved(policy: str = POLICY) -> ResolvedPolicy:
    """The policy resolved."""
    found = resolve(load(policy))
    assert found is not None
    return found


def problems(policy: str, head: str = HEAD) -> list[str]:
    """The messages of the validation error of an inventory with ``policy``."""
    with pytest.raises(ValidationError) as caught:
        loads(head + policy)
    return str(caught.value).splitlines()


# -- ports ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("tcp/5432", PortSpec(Proto.TCP, 5432, 5432)),
        ("udp/8472", PortSpec(Proto.UDP, 8472, 8472)),
        ("tcp/2379-2380", PortSpec(Proto.TCP, 2379, 2380)),
        (" TCP/1-65535 ", PortSpec(Proto.TCP, 1, 65535)),
        ("icmp", PortSpec(Proto.ICMP)),
        ("any", PortSpec(Proto.ANY)),
    ],
)
def test_port_specs(text: str, spec: PortSpec) -> None:
    """Every form of port spec, and its canonical text."""
    assert PortSpec.parse(text, "ports") == spec
    assert PortSpec.parse(str(spec), "ports") == spec


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tcp/0", "port 0 is out of range"),
        ("udp/65536", "port 65536 is out of range"),
        ("tcp/2380-2379", "the range is backwards"),
        ("sctp/1", "is not a port"),
        ("tcp/", "is not a port"),
        ("5432", "is not a port"),
        (5432, "must be a string"),
    ],
)
def test_bad_port_specs(value: object, message: str) -> None:
    """Bad ports are refused with what is wrong and how to write it."""
    with pytest.raises(ValidationError) as caught:
        PortSpec.parse(value, "rule 1: ports")
    assert message in caught.value.message
    assert caught.value.hint


def test_probes_are_single_ports() -> None:
    """A test names one port or icmp; a range or "any" is refused."""
    assert Probe.parse("tcp/5432", "port") == Probe(Proto.TCP, 5432)
    assert str(Probe.parse("icmp", "port")) == "icmp"
    for bad in ("tcp/1-2", "any"):
        with pytest.raises(ValidationError, match="not a single probe"):
            Probe.parse(bad, "port")


# -- the format ---------------------------------------------------------------------------------


def test_policy_is_parsed() -> None:
    """The example policy: rules in order with their origins, tests with their indices."""
    inv = load()
    policy = inv.policy
    assert policy is not None
    assert policy.default is Action.DENY and policy.presets == ("k3s",) and policy.ping
    assert [r.origin for r in policy.rules] == ["rule 1", "rule 2", "rule 3"]
    assert policy.rules[2].sources == ("app-1", "k3s-agents")
    assert policy.rules[1].action is Action.DENY
    assert [t.describe() for t in policy.tests][:2] == [
        "test 1 (app-1 → db-1 tcp/5433)",
        "test 2 (app-1 → db-1 tcp/5432)",
    ]
    assert inv.node("app-2").groups == ("app", "web")


def test_array_of_tables_form_is_the_same() -> None:
    """``[[policy.rules]]`` tables are the same array as ``rules = [...]``."""
    inline = load('[policy]\nrules = [{ from = "app", to = "db", ports = "tcp/5432" }]\n')
    tables = load('[policy]\n[[policy.rules]]\nfrom = "app"\nto = "db"\nports = "tcp/5432"\n')
    assert inline.policy == tables.policy


def test_no_policy_means_nothing() -> None:
    """Without ``[policy]`` the inventory has none; groups alone are fine."""
    inv = load("")
    assert inv.policy is None and resolve(inv) is None


def test_errors_name_the_rule_test_and_key() -> None:
    """One error per problem, each naming the rule or test, its key, and a fix."""
    lines = problems(
        """
[policy]
default = "block"
ping = "yes"
presets = ["k3"]
rules = [
  { from = "app", to = "db", ports = "tcp/99999" },
  { from = "ap", to = "db", port = "tcp/5432" },
  { from = "app", to = "dbs", ports = "tcp/1", action = "reject" },
]
tests = [
  { from = "app-1", to = "db-1", port = "tcp/1-2", expect = "allow" },
  { from = "app-1", to = "db-1", port = "tcp/1", expect = "yes" },
]
"""
    )
    text = "\n".join(lines)
    for expected in (
        "[policy]: default 'block' is not allow or deny",
        "[policy]: ping must be true or false, not 'yes'",
        "[policy] rule 1: ports 'tcp/99999': port 99999 is out of range",
        "[policy] rule 2: unknown key 'port' (did you mean 'ports'?)",
        "[policy] rule 2: 'ports' is missing",
        "[policy] rule 3: action 'reject' is not allow or deny",
        "[policy] test 1: port 'tcp/1-2' is not a single probe",
        "[policy] test 2: expect 'yes' is not allow or deny",
    ):
        assert expected in text, (expected, text)


def test_cross_checks() -> None:
    """Unknown references (with did-you-mean), unknown presets, tests without a pair."""
    lines = problems(
        """
[policy]
presets = ["k3"]
rules = [{ from = "ap", to = "db", ports = "tcp/5432" }]
tests = [{ from = "db-1", to = "db-1", port = "tcp/22", expect = "deny" }]
"""
    )
    text = "\n".join(lines)
    assert "[policy] rule 1: from: no group or node named 'ap' (did you mean 'app'?)" in text
    assert "[policy] presets: unknown preset 'k3' (did you mean 'k3s'?)" in text
    assert "[policy] test 1: from 'db-1' to 'db-1' names no pair of distinct nodes" in text


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        (
            '[[node]]\nname = "db"\n[[node]]\nname = "x"\ngroups = ["db"]\n',
            "has the same name as node",
        ),
        ('[[node]]\nname = "x"\ngroups = ["k3s-servers"]\n', "is derived from k3s_role"),
        ('[[node]]\nname = "x"\ngroups = ["a", "a"]\n', "'a' is listed 2 times"),
        ('[[node]]\nname = "x"\ngroups = ["*"]\n', '"*" already means every node'),
        ('[[node]]\nname = "x"\ngroups = ["Bad"]\n', "is not a valid name"),
        ('[[node]]\nname = "x"\ngroups = "db"\n', "must be a list"),
    ],
)
def test_bad_groups(nodes: str, message: str) -> None:
    """Groups must not shadow node names or the derived groups, nor repeat."""
    head = 'version = 1\n[mesh]\ncidr = "10.0.0.0/24"\n' + nodes
    assert message in "\n".join(problems("", head))


def test_guard_needs_overlay_only_ports_and_never_any() -> None:
    """``guard = true`` with nothing marked is an error; so is an overlay-only rule on "any"."""
    assert "no rule marks ports as overlay_only" in "\n".join(problems("[policy]\nguard = true\n"))
    text = "\n".join(
        problems(
            '[policy]\nguard = true\nrules = [{ from = "*", to = "db", ports = "any", '
            "overlay_only = true }]\n"
        )
    )
    assert 'overlay_only with ports "any"' in text


def test_k3s_preset_needs_roles() -> None:
    """The k3s preset without any k3s_role is an error."""
    head = 'version = 1\n[mesh]\ncidr = "10.0.0.0/24"\n[[node]]\nname = "a"\n'
    assert "no node has a k3s_role" in "\n".join(problems('[policy]\npresets = ["k3s"]\n', head))


def test_groups_are_written_back_and_policy_kept() -> None:
    """Groups set through the model are written into the node's table; the [policy] table, which
    only the user edits, stays byte for byte."""
    text = HEAD + POLICY
    inv = loads(text).inventory
    changed = inv.with_node(replace(inv.node("db-2"), groups=("db", "backup")))
    out = update_text(text, changed)
    assert 'name = "db-2"\ngroups = ["db", "backup"]' in out
    assert out.endswith(POLICY)
    assert loads(out).inventory == changed


# -- the evaluator --------------------------------------------------------------------------------


def test_first_matching_rule_decides() -> None:
    """Rules in order, first match; a deny rule; presets after the user's rules; the default."""
    r = resolved()
    assert decide(r, "app-1", "db-1", Probe(Proto.TCP, 5433)).decided_by == "rule 1"
    d = decide(r, "app-1", "db-1", Probe(Proto.TCP, 22))
    assert (d.action, d.decided_by) == (Action.DENY, "rule 2")
    d = decide(r, "k-3", "k-1", Probe(Proto.TCP, 6443))
    assert (d.action, d.decided_by) == (Action.DENY, "rule 3")  # before the preset's allow
    d = decide(r, "k-1", "k-2", Probe(Proto.TCP, 6443))
    assert (d.action, d.decided_by) == (Action.ALLOW, "k3s preset (supervisor and API)")
    d = decide(r, "app-1", "db-1", Probe(Proto.TCP, 5432))
    assert (d.action, d.rule) == (Action.DENY, None)
    assert d.describe() == "the default deny decided"


def test_k3s_preset_follows_the_k3s_docs() -> None:
    """etcd only between servers; API to servers; kubelet and VXLAN between all k3s nodes; nothing
    for nodes without a role."""
    r = resolved('[policy]\ndefault = "deny"\npresets = ["k3s"]\n')
    tcp, udp = Proto.TCP, Proto.UDP
    assert decide(r, "k-1", "k-2", Probe(tcp, 2379)).allowed
    assert not decide(r, "k-3", "k-1", Probe(tcp, 2380)).allowed
    assert decide(r, "k-3", "k-1", Probe(tcp, 6443)).allowed
    assert not decide(r, "k-1", "k-3", Probe(tcp, 6443)).allowed
    assert decide(r, "k-1", "k-3", Probe(tcp, 10250)).allowed
    assert decide(r, "k-3", "k-2", Probe(udp, 8472)).allowed
    assert not decide(r, "app-1", "k-1", Probe(udp, 8472)).allowed
    assert all(rule.overlay_only for rule in (i.rule for i in r.rules) if rule is not PING_RULE)


def test_ping_is_allowed_unless_a_rule_says_otherwise() -> None:
    """The built-in ping rule comes after the user's rules and presets; ``ping = false`` drops it."""
    r = resolved()
    d = decide(r, "db-1", "app-1", Probe(Proto.ICMP))
    assert (d.allowed, d.decided_by) == (True, "built-in ping rule")
    d = decide(r, "app-1", "k-1", Probe(Proto.ICMP))
    assert (d.allowed, d.decided_by) == (False, "rule 3")
    off = resolved('[policy]\ndefault = "deny"\nping = false\n')
    assert decide(off, "db-1", "app-1", Probe(Proto.ICMP)).decided_by == "default"


def test_failing_tests_say_which_rule_decided() -> None:
    """Failures name the test, what it expects, and the rule or default that decided, with the rule
    that nearly matched."""
    out = [o.describe() for o in run_tests(resolved())]
    assert out == [
        "test 1 (app-1 → db-1 tcp/5433) expects allow: passes",
        "test 2 (app-1 → db-1 tcp/5432) expects allow, but rule 1 (from app to db ports tcp/5433) "
        "does not cover tcp/5432, and the default deny decided",
        "test 3 (app → db tcp/22) expects allow, but for app-1 → db-1, app-1 → db-2, app-2 → db-1 "
        "and 1 more rule 2 (deny from * to db ports tcp/22) denies it",
        "test 4 (k-3 → k-1 tcp/6443) expects allow, but rule 3 (deny from app-1, k3s-agents to "
        "k3s-servers ports tcp/6443, icmp) denies it",
    ]
    assert [o.test.index for o in failing(resolved())] == [2, 3, 4]
