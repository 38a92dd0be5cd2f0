"""Issue 10, item 13 and the smaller ones: plan --detailed-exitcode, the host-key hint, wg-quick's
failing line, plan and apply counting alike, mesh set without options, status NODE, node ls
columns, show with a peer that has no key yet.

Nothing here reaches a host: plans and apply reports are made in the test, and the one status
run connects to a closed port on loopback.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from tests.helpers import ONE_NODE, cli, keys, write_inventory

BASE = ONE_NODE


def _inventory(tmp_path: Path, text: str = BASE) -> Path:
    return write_inventory(tmp_path, text)


# --- item 13: plan --detailed-exitcode ------------------------------------------------------------


def _mesh_plan(changes: int, failed: bool = False, key_update: bool = False) -> Any:
    from wiremesh.model.changes import HostPlan, WriteConfig
    from wiremesh.ops.planning import HostResult, MeshPlan
    from wiremesh.remote.ssh import HostError

    host = HostResult(
        "a", HostPlan("a", tuple(WriteConfig(f"/f{i}", "new") for i in range(changes)))
    )
    hosts = [host]
    if failed:
        hosts.append(HostResult("b", error=HostError("b", "cannot connect")))
    updates = {"a": keys(1)[0].public_key()} if key_update else {}
    return MeshPlan(tuple(hosts), updates)


@pytest.mark.parametrize(
    ("changes", "failed", "key_update", "detailed", "default"),
    [
        (0, False, False, 0, 0),
        (3, False, False, 2, 0),
        (0, False, True, 2, 0),  # the inventory would change: that is drift too
        (3, True, False, 1, 1),
        (0, True, False, 1, 1),
    ],
)
def test_plan_detailed_exitcode(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    changes: int,
    failed: bool,
    key_update: bool,
    detailed: int,
    default: int,
) -> None:
    inv = _inventory(tmp_path)
    plan = _mesh_plan(changes, failed, key_update)
    monkeypatch.setattr("wiremesh.ops.planning.plan", lambda *args: plan)
    r = cli("-f", inv, "plan", "--detailed-exitcode")
    assert r.code == detailed
    assert "host(s):" in r.out  # the plan was made and printed (not a usage error)
    assert cli("-f", inv, "plan", "--detailed-exitcode", "--json").code == detailed
    assert cli("-f", inv, "plan").code == default


def test_plan_detailed_exitcode_turns_every_error_into_1(tmp_path: Path) -> None:
    r = cli("-f", tmp_path / "none.toml", "plan", "--detailed-exitcode")
    assert r.code == 1 and "no inventory" in r.err  # a validation error: 2 without the flag
    assert cli("-f", tmp_path / "none.toml", "plan").code == 2
    assert cli("plan", "--detailed-exitcode", "--parallel", "0").code == 1  # a usage error too
    assert cli("plan", "--parallel", "0").code == 2


# --- plan and apply count alike --------------------------------------------------------------------


def test_plan_and_apply_count_changes_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dataclasses import replace

    from wiremesh.model.changes import HostPlan
    from wiremesh.ops.converge import ApplyReport
    from wiremesh.ops.planning import HostResult, MeshPlan

    inv = _inventory(tmp_path)
    planned = _mesh_plan(3)
    current = HostResult("b", HostPlan("b", ()))
    planned = MeshPlan((*planned.hosts, current))
    monkeypatch.setattr("wiremesh.ops.planning.plan", lambda *args: planned)
    plan_out = cli("-f", inv, "plan").out
    assert "2 host(s): 1 to change (3 change(s)), 1 up to date, 0 unreadable" in plan_out

    done = tuple(replace(h, done=h.plan.changes) if h.plan else h for h in planned.hosts)
    report = ApplyReport(planned, done, applied=True)
    monkeypatch.setattr("wiremesh.ops.converge.apply", lambda *args, **kwargs: report)
    apply_out = cli("-f", inv, "apply", "--yes").out
    assert "changed a: 3 change(s)" in apply_out
    assert "2 host(s): 1 changed (3 change(s)), 1 up to date, 0 failed" in apply_out


# --- mesh set without options ----------------------------------------------------------------------


def test_mesh_set_without_options_is_a_usage_error(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, BASE + 'address = "10.0.0.1"\n')
    before = inv.read_bytes()
    r = cli("-f", inv, "mesh", "set")
    assert r.code == 2 and "nothing to change" in r.err and "hint:" in r.err
    assert "updated" not in r.err
    r = cli("-f", inv, "mesh", "set", "--mtu", "1420")  # the value it has
    assert r.code == 0 and "nothing changed" in r.err
    assert inv.read_bytes() == before


# --- status NODE ----------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_status_accepts_node_names_and_shows_only_those(tmp_path: Path) -> None:
    port = _closed_port()
    text = BASE.replace('endpoint = "203.0.113.1"', f'ssh = "root@127.0.0.1:{port}"')
    text += f'[[node]]\nname = "b"\nssh = "root@127.0.0.1:{port}"\n'
    text += f'[[node]]\nname = "c"\nssh = "root@127.0.0.1:{port}"\n'
    inv = _inventory(tmp_path, text)
    r = cli("-f", inv, "status", "a", "--json", "--connect-timeout", "2")
    assert r.code == 1, r  # unreachable (a closed port): not healthy
    data = json.loads(r.out)
    assert [n["name"] for n in data["nodes"]] == ["a"]
    assert data["links"]["expected"] == 2  # a's links toward b and c
    r = cli("-f", inv, "status", "zz")
    assert r.code == 2 and "no node named 'zz'" in r.err


# --- node ls shows every setting ------------------------------------------------------------------


def test_node_ls_shows_listen_port_allowed_ips_relay_and_k3s_role(tmp_path: Path) -> None:
    text = BASE + 'listen_port = 51999\nallowed_ips = ["172.16.5.0/24"]\nk3s_role = "server"\n'
    text += '[[node]]\nname = "b"\nrelay = "a"\n'
    inv = _inventory(tmp_path, text)
    data = json.loads(cli("-f", inv, "node", "ls", "--json").out)
    a, b = data["nodes"]
    assert a["listen_port"] == 51999 and a["allowed_ips"] == ["172.16.5.0/24"]
    assert a["k3s_role"] == "server" and b["relay"] == "a" and b["k3s_role"] is None
    table = cli("-f", inv, "node", "ls").out
    for text_ in ("51999", "172.16.5.0/24", "server", "relay", "k3s"):
        assert text_ in table, table


# --- show with a peer that has no key yet ---------------------------------------------------------


def test_show_marks_a_peer_without_a_key_instead_of_failing(tmp_path: Path) -> None:
    text = BASE + f'public_key = "{keys(1)[0].public_key()}"\n[[node]]\nname = "b"\n'
    inv = _inventory(tmp_path, text)
    r = cli("-f", inv, "show", "a")  # its peer b has no key yet
    assert r.code == 0, r
    assert "warning: the public key of b is not known yet" in r.err and "not usable" in r.err
    assert "PublicKey = <not known yet: run 'wiremesh apply' or 'wiremesh render'>" in r.out
    r = cli("-f", inv, "show", "b")  # b itself has no key: its config is fine to show
    assert r.code == 0 and "warning" not in r.err
    assert "PublicKey = " + str(keys(1)[0].public_key()) in r.out


def test_a_config_with_an_unknown_key_is_never_written(tmp_path: Path) -> None:
    from wiremesh.codec.wgquick import KeyFile, render
    from wiremesh.errors import ValidationError
    from wiremesh.model.inventory import Inventory, MeshSettings, Node
    from wiremesh.model.names import NodeName
    from wiremesh.model.topology import wanted_device

    mesh = MeshSettings(cidr=__import__("ipaddress").IPv4Network("10.0.0.0/24"))
    addr = __import__("ipaddress").IPv4Address
    nodes = (Node(NodeName("a"), addr("10.0.0.1")), Node(NodeName("b"), addr("10.0.0.2")))
    inventory = Inventory(mesh, nodes)
    with pytest.raises(ValidationError, match="not known yet"):
        render(wanted_device(inventory, nodes[0]), KeyFile("/k"))


# --- SSH errors -----------------------------------------------------------------------------------


def test_host_key_hint_names_the_known_hosts_file_in_use(tmp_path: Path) -> None:
    from wiremesh.model.endpoint import SshTarget
    from wiremesh.remote.ssh import HostError, SshOptions, _host_key_problem

    known = tmp_path / "my_known_hosts"
    config = tmp_path / "ssh_config"
    config.write_text(f"Host lab1\n  HostName 198.51.100.11\n  UserKnownHostsFile {known}\n")
    options = SshOptions(config=config)
    target = SshTarget("lab1", "root")
    with pytest.raises(HostError) as unknown:
        asyncio.run(_host_key_problem("lab1", target, options, {}))
    text = str(unknown.value)
    assert f"is not in {known}" in text and f">> {known}" in text
    assert f"ssh -F {config} root@lab1" in text
    assert "~/.ssh/known_hosts" not in text and ".ssh/known_hosts" not in text

    other = asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
    known.write_text(f"lab1 {other}")
    with pytest.raises(HostError) as changed:
        asyncio.run(_host_key_problem("lab1", target, options, {}))
    text = str(changed.value)
    assert f"CHANGED since it was recorded in {known}" in text
    assert f"ssh-keygen -f {known} -R 198.51.100.11" in text


WG_QUICK_FAILURE = """\
[#] ip link add wg0 type wireguard
RTNETLINK answers: Operation not supported
[#] wireguard-go wg0
┌──────────────────────────────────────────────────────┐
│   Running wireguard-go is not required because this   │
└──────────────────────────────────────────────────────┘
[#] wg setconf wg0 /dev/fd/63
[#] ip -4 address add 10.0.0.1/24 dev wg0
Error: ipv4: Address already assigned.
[#] ip link delete dev wg0
"""


def test_a_wg_quick_failure_shows_the_line_that_failed() -> None:
    from wiremesh.remote.ssh import HostCommandError

    error = HostCommandError("lab1", "wg-quick up wg0", "wg-quick up wg0", 1, WG_QUICK_FAILURE)
    text = str(error)
    assert "[#] ip -4 address add 10.0.0.1/24 dev wg0" in text
    assert "Error: ipv4: Address already assigned." in text
    assert "[#] ip link delete dev wg0" in text  # the last line, still
    assert "Running wireguard-go" not in text


def test_other_failures_show_their_first_and_last_line_bounded() -> None:
    from wiremesh.remote.ssh import HostCommandError

    stderr = "awk: cannot open /etc/wireguard/wg0.key\n" + "x" * 5000 + "\nmv: cannot stat\n"
    text = str(HostCommandError("h", "writing the config", "sh", 2, stderr))
    assert "awk: cannot open /etc/wireguard/wg0.key" in text and "mv: cannot stat" in text
    assert len(text) < 600
    assert "no error output" in str(HostCommandError("h", "s", "sh", 1, ""))
