"""k3s on the mesh (issue 6): each node's config.yaml, its checks, the pod MTU, ``wiremesh k3s config``.

The YAML is read back with PyYAML, a YAML 1.1 parser like the gopkg.in/yaml.v2 that k3s uses, so the
quoting is checked by a parser other than the code that wrote it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import cli
from wiremesh.errors import ValidationError
from wiremesh.model.host import FILE_MARKER
from wiremesh.model.inventory import InvalidInventory, Inventory, MeshSettings, Node
from wiremesh.model.k3s import (
    CLUSTER_CIDR6,
    CONFIG_PATH,
    SERVICE_CIDR6,
    K3sRequest,
    cluster_configs,
    node_config,
    pod_mtu,
    render_yaml,
    yaml_string,
)
from wiremesh.model.names import NodeName
from wiremesh.model.safe import UnsafeValue
from wiremesh.ops.k3s import k3s_files

# The flags each command accepts, as listed in k3s-io/k3s pkg/cli/cmds/server.go (ServerFlags) and
# pkg/cli/cmds/agent.go (NewAgentCommand), for the keys wiremesh may write. A server also runs an
# agent, so it takes the agent's node flags; cluster-* and tls-san are server-only.
AGENT_FLAGS = {"server", "token-file", "node-name", "node-ip", "node-external-ip", "flannel-iface"}
SERVER_FLAGS = AGENT_FLAGS | {
    "advertise-address",
    "tls-san",
    "cluster-init",
    "cluster-cidr",
    "service-cidr",
    "flannel-ipv6-masq",
}


def load(text: str) -> dict[str, Any]:
    """The YAML as k3s would read it: a flat mapping of strings, booleans and lists of strings."""
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    for key, value in data.items():
        assert isinstance(key, str)
        if isinstance(value, list):
            assert all(isinstance(item, str) for item in value), (key, value)
        else:
            assert isinstance(value, str | bool), (key, value)
    return data


def node(name: str, index: int, role: str | None, dual: bool = False) -> Node:
    return Node(
        name=NodeName(name),
        address=IPv4Address(f"10.0.0.{index}"),
        address6=IPv6Address(f"fd00:77::{index}") if dual else None,
        k3s_role=role,
    )


def inventory(
    roles: Mapping[str, str | None], dual: bool = False, mtu: int | str = 1420, name: str = "prod"
) -> Inventory:
    """A mesh of the nodes in ``roles`` (name -> role), in that order."""
    mesh = MeshSettings(
        cidr=IPv4Network("10.0.0.0/24"),
        cidr6=IPv6Network("fd00:77::/64") if dual else None,
        name=name,
        mtu=mtu,
    )
    return Inventory(mesh, tuple(node(n, i + 1, r, dual) for i, (n, r) in enumerate(roles.items())))


THREE = {"fsn-1": "server", "ams-1": "agent", "nyc-1": "agent"}


# --- generated YAML ------------------------------------------------------------------------------


def test_single_stack_server_exact_text() -> None:
    config = node_config(inventory(THREE), "fsn-1")
    assert config.yaml(("header",)) == (
        "# header\n"
        "# pod MTU 1370 = wg0's MTU 1420 - 50 (flannel VXLAN)\n"
        'node-name: "fsn-1"\n'
        'node-ip: "10.0.0.1"\n'
        'advertise-address: "10.0.0.1"\n'
        "tls-san:\n"
        '  - "10.0.0.1"\n'
        '  - "fsn-1.prod"\n'
        'flannel-iface: "wg0"\n'
    )
    assert config.role == "server" and config.joins is None
    assert config.warnings == ()


def test_single_stack_agent_joins_the_first_server() -> None:
    config = node_config(inventory(THREE), "ams-1")
    assert load(config.yaml()) == {
        "server": "https://10.0.0.1:6443",
        "node-name": "ams-1",
        "node-ip": "10.0.0.2",
        "flannel-iface": "wg0",
    }
    assert config.joins == "fsn-1"


def test_the_first_server_is_first_in_inventory_order_not_first_named() -> None:
    inv = inventory({"a-agent": "agent", "z-server": "server", "b-server": "server"})
    assert load(node_config(inv, "a-agent").yaml())["server"] == "https://10.0.0.2:6443"
    first = load(node_config(inv, "z-server").yaml())
    second = load(node_config(inv, "b-server").yaml())
    # Two servers: the first starts embedded etcd, the second joins it.
    assert first["cluster-init"] is True and "server" not in first
    assert second["server"] == "https://10.0.0.2:6443" and "cluster-init" not in second


def test_a_single_server_keeps_the_default_datastore() -> None:
    assert "cluster-init" not in load(node_config(inventory(THREE), "fsn-1").yaml())


def test_dual_stack_server() -> None:
    config = node_config(inventory(THREE, dual=True), "fsn-1")
    data = load(config.yaml())
    assert data == {
        "node-name": "fsn-1",
        "node-ip": "10.0.0.1,fd00:77::1",
        "advertise-address": "10.0.0.1",
        "tls-san": ["10.0.0.1", "fd00:77::1", "fsn-1.prod"],
        "flannel-iface": "wg0",
        "cluster-cidr": "10.42.0.0/16,fd00:42::/56",
        "service-cidr": "10.43.0.0/16,fd00:43::/112",
        "flannel-ipv6-masq": True,
    }
    # k3s needs one network of each family, IPv4 first (the primary family), valid and private.
    for key in ("cluster-cidr", "service-cidr"):
        v4, v6 = (ip_network(part) for part in data[key].split(","))
        assert (v4.version, v6.version) == (4, 6)
        assert v4.is_private and v6.is_private
        assert not v6.overlaps(IPv6Network("fd00:77::/64"))
    assert [ip_address(a).version for a in data["node-ip"].split(",")] == [4, 6]


def test_dual_stack_agent_has_both_addresses_and_no_server_flags() -> None:
    data = load(node_config(inventory(THREE, dual=True), "nyc-1").yaml())
    assert data == {
        "server": "https://10.0.0.1:6443",
        "node-name": "nyc-1",
        "node-ip": "10.0.0.3,fd00:77::3",
        "flannel-iface": "wg0",
    }


def test_token_file_and_external_ips_only_when_asked() -> None:
    inv = inventory(THREE, dual=True)
    plain = load(node_config(inv, "ams-1").yaml())
    assert "token-file" not in plain and "node-external-ip" not in plain
    request = K3sRequest(
        token_file="/etc/rancher/k3s/token",
        node_external_ips=(IPv4Address("198.51.100.20"), IPv6Address("2001:db8::20")),
    )
    data = load(node_config(inv, "ams-1", request).yaml())
    assert data["token-file"] == "/etc/rancher/k3s/token"
    assert data["node-external-ip"] == "198.51.100.20,2001:db8::20"
    # The overlay stays the node's k3s address: external IPs do not replace node-ip.
    assert data["node-ip"] == "10.0.0.2,fd00:77::2"


def test_role_and_server_options_override_the_inventory() -> None:
    inv = inventory({"s1": "server", "s2": "server", "a1": "agent"})
    as_agent = node_config(inv, "s2", K3sRequest(role="agent"))
    assert as_agent.role == "agent"
    assert as_agent.get("advertise-address") is None and as_agent.get("tls-san") is None
    assert as_agent.get("server") == "https://10.0.0.1:6443"
    # An agent told to join the second server joins it.
    assert node_config(inv, "a1", K3sRequest(server="s2")).get("server") == "https://10.0.0.2:6443"
    # The first server told to join the second one does, and does not start etcd itself.
    joined = node_config(inv, "s1", K3sRequest(server="s2"))
    assert joined.get("server") == "https://10.0.0.2:6443" and joined.get("cluster-init") is None
    # A node without a role in the inventory gets one from the request.
    inv = inventory({"s1": "server", "x": None})
    assert node_config(inv, "x", K3sRequest(role="agent")).get("server") == "https://10.0.0.1:6443"


def test_the_interface_and_mesh_name_come_from_the_inventory() -> None:
    inv = inventory(THREE, name="edge")
    inv = replace(inv, mesh=replace(inv.mesh, interface="wgk3s"))
    data = load(node_config(inv, "fsn-1").yaml())
    assert data["flannel-iface"] == "wgk3s"
    assert data["tls-san"][-1] == "fsn-1.edge"


def test_every_key_is_a_k3s_flag_of_its_role() -> None:
    for dual in (False, True):
        inv = inventory({"s1": "server", "s2": "server", "a1": "agent"}, dual=dual)
        request = K3sRequest(token_file="/t", node_external_ips=(IPv4Address("192.0.2.1"),))
        for name, config in cluster_configs(inv).items():
            keys = set(load(config.yaml()))
            allowed = SERVER_FLAGS if config.role == "server" else AGENT_FLAGS
            assert keys <= allowed, (name, keys - allowed)
            keys = set(load(node_config(inv, name, request).yaml()))
            assert keys <= allowed, (name, keys - allowed)


@settings(max_examples=60, deadline=None)
@given(
    roles=st.lists(st.sampled_from(["server", "agent", None]), min_size=1, max_size=8),
    dual=st.booleans(),
    mtu=st.one_of(st.integers(1280, 9000), st.just("auto")),
)
def test_any_mesh_gives_parseable_configs_with_the_nodes_addresses(
    roles: list[str | None], dual: bool, mtu: int | str
) -> None:
    inv = inventory({f"n{i}": r for i, r in enumerate(roles)}, dual=dual, mtu=mtu)
    servers = [n for n in inv if n.k3s_role == "server"]
    if "agent" in roles and not servers:
        with pytest.raises(InvalidInventory, match="no server to join"):
            cluster_configs(inv)
        return
    configs = cluster_configs(inv)
    assert list(configs) == [n.name for n in inv if n.k3s_role is not None]
    for n in inv:
        if n.name not in configs:
            continue
        data = load(configs[n.name].yaml(("# a header",)))
        ips = [ip_address(a) for a in data["node-ip"].split(",")]
        assert ips == ([n.address, n.address6] if dual else [n.address])
        if n.k3s_role == "agent" or n.name != servers[0].name:
            assert data["server"] == f"https://{servers[0].address}:6443"
        assert data.get("cluster-init", False) is (n.name == servers[0].name and len(servers) > 1)


@given(st.text(st.characters(blacklist_categories=("Cs", "Co")), max_size=40))
def test_strings_survive_yaml_quoting_or_are_refused(text: str) -> None:
    # Control characters and YAML's extra line breaks (U+0085, U+2028, U+2029) are refused by the
    # render guard; everything else round-trips exactly.
    if not text.isprintable():
        with pytest.raises(UnsafeValue):
            yaml_string(text)
        return
    assert yaml.safe_load(f"k: {yaml_string(text)}") == {"k": text}
    assert yaml.safe_load(render_yaml((("k", (text, "x")),))) == {"k": [text, "x"]}


@pytest.mark.parametrize(
    "text",
    ["yes", "on", "off", "null", "~", "1e3", "0x10", "a: b", "- x", "#c", '"q"', "b\\s", "é"],
)
def test_strings_yaml_would_read_as_something_else(text: str) -> None:
    assert yaml.safe_load(render_yaml((("k", text),))) == {"k": text}


# --- rejections ----------------------------------------------------------------------------------


def test_server_option_naming_an_agent_is_rejected() -> None:
    with pytest.raises(ValidationError, match="'nyc-1' is not a k3s server") as err:
        node_config(inventory(THREE), "ams-1", K3sRequest(server="nyc-1"))
    assert err.value.hint and "fsn-1" in err.value.hint and "--k3s-role server" in err.value.hint


def test_server_option_naming_a_node_without_role_is_rejected() -> None:
    inv = inventory({"s1": "server", "a1": "agent", "plain": None})
    with pytest.raises(ValidationError, match=r"'plain' is not a k3s server \(its role: none\)"):
        node_config(inv, "a1", K3sRequest(server="plain"))


def test_server_option_naming_the_node_itself_or_an_unknown_node() -> None:
    with pytest.raises(ValidationError, match="cannot join itself"):
        node_config(inventory(THREE), "fsn-1", K3sRequest(server="fsn-1"))
    with pytest.raises(ValidationError, match=r"no node named 'fsn-2'.*did you mean 'fsn-1'"):
        node_config(inventory(THREE), "ams-1", K3sRequest(server="fsn-2"))


def test_unknown_node_and_node_without_role() -> None:
    with pytest.raises(ValidationError, match="no node named 'nyc-2'"):
        node_config(inventory(THREE), "nyc-2")
    with pytest.raises(ValidationError, match="'x' has no k3s role") as err:
        node_config(inventory({"s1": "server", "x": None}), "x")
    assert err.value.hint and "--k3s-role" in err.value.hint


def test_agent_with_no_server_in_the_mesh() -> None:
    inv = inventory({"a1": "agent", "a2": "agent", "x": None})
    with pytest.raises(ValidationError, match="'a1' has no server to join") as err:
        node_config(inv, "a1")
    assert err.value.hint and "--k3s-role server" in err.value.hint
    # --server cannot stand in for a missing server role.
    with pytest.raises(ValidationError, match="'x' is not a k3s server"):
        node_config(inv, "a1", K3sRequest(server="x"))


def test_node_with_no_ipv6_address_in_a_dual_stack_mesh() -> None:
    inv = inventory(THREE, dual=True)
    bare = replace(inv.nodes[1], address6=None)
    inv = inv.with_node(bare)
    with pytest.raises(ValidationError, match="'ams-1' has no IPv6 overlay address") as err:
        node_config(inv, "ams-1")
    assert err.value.hint and "--address6" in err.value.hint
    # Others are fine; apply --k3s names the node and writes nothing.
    assert node_config(inv, "fsn-1").get("node-ip") == "10.0.0.1,fd00:77::1"
    with pytest.raises(InvalidInventory, match="ams-1"):
        k3s_files(inv)


def test_mesh_networks_overlapping_the_pod_or_service_network() -> None:
    inv = inventory(THREE)
    bad = replace(inv, mesh=replace(inv.mesh, cidr=IPv4Network("10.42.7.0/24")))
    with pytest.raises(ValidationError, match="overlaps k3s' pod network"):
        node_config(bad, "fsn-1")
    routed = inv.with_node(replace(inv.nodes[2], allowed_ips=(IPv4Network("10.43.0.0/24"),)))
    with pytest.raises(ValidationError, match=r"allowed_ips of node 'nyc-1'.*service network"):
        node_config(routed, "fsn-1")
    dual = inventory(THREE, dual=True)
    clash = Inventory(
        replace(dual.mesh, cidr6=IPv6Network("fd00:42::/64")),
        tuple(replace(n, address6=IPv6Address(f"fd00:42::{i + 1}")) for i, n in enumerate(dual)),
    )
    with pytest.raises(
        ValidationError, match=re.escape(f"IPv6 pod network (cluster-cidr) {CLUSTER_CIDR6}")
    ):
        node_config(clash, "ams-1")
    assert not CLUSTER_CIDR6.overlaps(SERVICE_CIDR6)


def test_bad_request_values() -> None:
    inv = inventory(THREE)
    for path in ("token", "etc/token", "/", "/etc/tok\nen"):
        with pytest.raises(ValidationError, match="not an absolute path"):
            node_config(inv, "ams-1", K3sRequest(token_file=path))
    two = (IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2"))
    with pytest.raises(ValidationError, match="more than one external IPv4"):
        node_config(inv, "ams-1", K3sRequest(node_external_ips=two))
    with pytest.raises(ValidationError, match="'master' is not a k3s role"):
        node_config(inv, "ams-1", K3sRequest(role="master"))


def test_apply_gets_every_problem_at_once() -> None:
    inv = inventory({"a1": "agent", "a2": "agent"})
    with pytest.raises(InvalidInventory) as err:
        cluster_configs(inv)
    assert len(err.value.problems) == 2
    assert "k3s: 2 problems" in err.value.message


# --- MTU -----------------------------------------------------------------------------------------


def test_pod_mtu_from_the_mesh_mtu() -> None:
    assert (pod_mtu(inventory(THREE).mesh).ipv4, pod_mtu(inventory(THREE).mesh).ipv6) == (
        1370,
        None,
    )
    dual = pod_mtu(inventory(THREE, dual=True).mesh)
    assert (dual.ipv4, dual.ipv6) == (1370, 1350)
    auto = pod_mtu(inventory(THREE, mtu="auto").mesh)
    assert auto.assumed and auto.mesh == 1420 and auto.ipv4 == 1370
    assert "mtu = auto" in auto.describe()


@pytest.mark.parametrize(
    ("mtu", "dual", "warned"),
    [
        (1420, False, False),
        (1330, False, False),  # pods get exactly 1280
        (1329, False, True),
        (1280, False, True),
        (1350, True, False),  # IPv6 pods get exactly 1280
        (1349, True, True),
        (9000, True, False),
    ],
)
def test_mtu_warning_threshold(mtu: int, dual: bool, warned: bool) -> None:
    config = node_config(inventory(THREE, dual=dual, mtu=mtu), "ams-1")
    assert bool(config.warnings) is warned
    if warned:
        assert "below" in config.warnings[0] and "1280" in config.warnings[0]
        assert ("IPv6 pod traffic" in config.warnings[0]) is dual


# --- apply --k3s: the managed files --------------------------------------------------------------


def test_k3s_files_are_managed_0600_and_only_for_nodes_with_a_role() -> None:
    inv = inventory({"s1": "server", "plain": None, "a1": "agent"})
    files = k3s_files(inv)
    assert list(files) == ["s1", "a1"]
    for name, (file,) in files.items():
        assert file.path == CONFIG_PATH == "/etc/rancher/k3s/config.yaml"
        assert file.mode == 0o600
        assert file.text.splitlines()[0] == FILE_MARKER
        assert load(file.text) == load(node_config(inv, name).yaml())
    assert k3s_files(inv) == files  # same inventory, same bytes: a second apply changes nothing


# --- the command, through the real entry point ---------------------------------------------------


def make_inventory(tmp_path: Path, *init: str) -> Path:
    inv = tmp_path / "wiremesh.toml"
    assert cli("-f", inv, "init", "--cidr", "10.77.0.0/24", "--name", "k3s", *init).code == 0
    for name, endpoint, role in (
        ("fsn-1", "203.0.113.10", "server"),
        ("ams-1", "198.51.100.20", "agent"),
        ("nyc-1", "192.0.2.30", "agent"),
    ):
        args = ("--endpoint", endpoint, "--ssh", "root@127.0.0.1:1", "--k3s-role", role)
        r = cli("-f", inv, "node", "add", name, *args)
        assert r.code == 0, r.err
    return inv


def test_config_command_prints_the_yaml(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path)
    r = cli("-f", inv, "k3s", "config", "ams-1")
    assert r.code == 0, r.err
    assert r.err == ""
    assert r.out.startswith("# k3s configuration of node ams-1 (agent, joins fsn-1) in mesh k3s")
    assert FILE_MARKER not in r.out  # printed for the user: not marked as wiremesh's
    assert load(r.out) == {
        "server": "https://10.77.0.1:6443",
        "node-name": "ams-1",
        "node-ip": "10.77.0.2",
        "flannel-iface": "wg0",
    }
    r = cli("-f", inv, "k3s", "config", "fsn-1")
    assert r.code == 0 and load(r.out)["advertise-address"] == "10.77.0.1"


def test_config_command_options(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path, "--cidr6", "fd00:77::/64")
    r = cli(
        "-f", inv, "k3s", "config", "nyc-1", "--role", "server", "--server", "fsn-1",
        "--token-file", "/etc/rancher/k3s/token",
        "--node-external-ip", "192.0.2.30", "--node-external-ip", "2001:db8::30",
    )  # fmt: skip
    assert r.code == 0, r.err
    assert load(r.out) == {
        "server": "https://10.77.0.1:6443",
        "token-file": "/etc/rancher/k3s/token",
        "node-name": "nyc-1",
        "node-ip": "10.77.0.3,fd00:77::3",
        "node-external-ip": "192.0.2.30,2001:db8::30",
        "advertise-address": "10.77.0.3",
        "tls-san": ["10.77.0.3", "fd00:77::3", "nyc-1.k3s"],
        "flannel-iface": "wg0",
        "cluster-cidr": "10.42.0.0/16,fd00:42::/56",
        "service-cidr": "10.43.0.0/16,fd00:43::/112",
        "flannel-ipv6-masq": True,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ams-1", "--server", "nyc-1"], "'nyc-1' is not a k3s server"),
        (["ams-1", "--server", "fsn-2"], "no node named 'fsn-2'"),
        (["fsn-9"], "no node named 'fsn-9'"),
        (["ams-1", "--token-file", "token"], "not an absolute path"),
        (["ams-1", "--node-external-ip", "fsn-1"], "is not an IP address"),
        (["ams-1", "--role", "master"], "invalid choice: 'master'"),
        ([], "the following arguments are required: NODE"),
    ],
)
def test_config_command_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    inv = make_inventory(tmp_path)
    before = inv.read_bytes()
    r = cli("-f", inv, "k3s", "config", *args)
    assert r.code == 2, r.out + r.err
    assert message in r.err
    assert r.out == ""
    assert inv.read_bytes() == before


def test_config_command_needs_a_role_and_a_server(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path)
    assert cli("-f", inv, "node", "set", "ams-1", "--clear", "k3s_role").code == 0
    r = cli("-f", inv, "k3s", "config", "ams-1")
    assert r.code == 2 and "has no k3s role" in r.err and "--role" in r.err
    assert cli("-f", inv, "k3s", "config", "ams-1", "--role", "agent").code == 0
    assert cli("-f", inv, "node", "set", "fsn-1", "--k3s-role", "agent").code == 0
    r = cli("-f", inv, "k3s", "config", "ams-1", "--role", "agent")
    assert r.code == 2 and "no server to join" in r.err
    r = cli("-f", tmp_path / "missing.toml", "k3s", "config", "ams-1")
    assert r.code == 2 and "no inventory" in r.err


def test_config_command_warns_about_the_pod_mtu_on_stderr(tmp_path: Path) -> None:
    inv = make_inventory(tmp_path)
    assert cli("-f", inv, "mesh", "set", "--mtu", "1300").code == 0
    r = cli("-f", inv, "k3s", "config", "ams-1")
    assert r.code == 0
    assert "warning: pods would get an MTU of 1250" in r.err
    assert "# pod MTU 1250 = wg0's MTU 1300 - 50" in r.out
    load(r.out)


def test_plan_k3s_refuses_a_bad_cluster_before_reading_any_host(tmp_path: Path) -> None:
    # The nodes' ssh targets are a closed local port: had wiremesh tried to reach a host, the error
    # would be an unreachable host (exit 1), not this usage error.
    inv = make_inventory(tmp_path)
    assert cli("-f", inv, "node", "set", "fsn-1", "--k3s-role", "agent").code == 0
    for command in (["plan", "--k3s"], ["apply", "--k3s", "--yes"]):
        r = cli("-f", inv, *command)
        assert r.code == 2, r.out + r.err
        assert "k3s: 3 problems" in r.err and "no server to join" in r.err
