"""The policy in plans (pure): configs load the table at bring-up, host plans carry the firewall
changes, a failing policy test stops everything before any host, a guard change waits for its
confirmation, and the boot file never holds an unconfirmed guard."""

from __future__ import annotations

import pytest

from wiremesh.codec.inventory_toml import loads
from wiremesh.codec.nftables import render
from wiremesh.codec.wgquick import KeyFile
from wiremesh.codec.wgquick import render as render_config
from wiremesh.errors import ValidationError
from wiremesh.model.device import WantedInterface
from wiremesh.model.firewall import RollBackPending, firewall_changes, with_observed_guard
from wiremesh.model.inventory import Inventory
from wiremesh.model.nft import GUARD
from wiremesh.model.nft_changes import CreateTable, GuardChange
from wiremesh.model.nft_host import NftHostState, PendingChange
from wiremesh.ops.mesh import wanted_hosts
from wiremesh.ops.planning import check_policy_tests

INVENTORY = """
version = 1
[mesh]
name = "prod"
cidr = "10.0.0.0/24"

[[node]]
name = "app-1"
endpoint = "198.51.100.11"
public_key = "{k1}"
groups = ["app"]
k3s_role = "agent"

[[node]]
name = "db-1"
endpoint = "198.51.100.12"
public_key = "{k2}"
groups = ["db"]
k3s_role = "server"

[policy]
default = "deny"
presets = ["k3s"]
guard = {guard}
rules = [{{ from = "app", to = "db", ports = "tcp/5432" }}]
tests = [{{ from = "app-1", to = "db-1", port = "tcp/5432", expect = "{expect}" }}]
"""


def _inventory(guard: bool = False, expect: str = "allow") -> Inventory:
    from tests.helpers import keys

    k1, k2 = (k.public_key() for k in keys(2))
    text = INVENTORY.format(k1=k1, k2=k2, guard=str(guard).lower(), expect=expect)
    return loads(text).inventory


def test_configs_load_the_table_before_the_interface_comes_up() -> None:
    wanted = wanted_hosts(_inventory())
    for name in ("app-1", "db-1"):
        host = wanted[name]
        assert host.firewall is not None
        assert "PreUp = nft -f /etc/wireguard/wiremesh-wg0.nft\n" in host.config_text


def test_no_policy_no_hook_and_no_table() -> None:
    from tests.helpers import simple_inventory

    inventory, _ = simple_inventory(3)
    wanted = wanted_hosts(inventory)
    assert all(w.firewall is None and "PreUp" not in w.config_text for w in wanted.values())


def test_the_hook_is_only_ever_our_own_table_file() -> None:
    from ipaddress import IPv4Interface

    from wiremesh.model.device import WantedDevice
    from wiremesh.model.names import NodeName

    address = (IPv4Interface("10.0.0.1/24"),)
    bad = WantedInterface("wg0", address, 51820, None, firewall_file="/tmp/x.nft; touch /root/pwn")
    with pytest.raises(ValueError, match="refusing to write a PreUp hook"):
        render_config(WantedDevice(NodeName("a"), bad, ()), KeyFile("/etc/wireguard/wg0.key"))


def test_a_failing_policy_test_is_refused_before_any_host_is_contacted() -> None:
    with pytest.raises(ValidationError) as info:
        check_policy_tests(_inventory(expect="deny"))
    assert "test 1 (app-1 → db-1 tcp/5432) expects deny" in info.value.message
    assert "rule 1 (from app to db ports tcp/5432) allows it" in info.value.message
    assert check_policy_tests(_inventory()) is not None


def test_a_new_table_is_planned_and_a_guard_change_waits_for_confirmation() -> None:
    host = wanted_hosts(_inventory(guard=True))["db-1"]
    assert host.firewall is not None
    state = NftHostState(nft=True, table=None)
    changes, notes = firewall_changes(host.firewall, state, [])
    kinds = [type(c) for c in changes]
    assert CreateTable in kinds and GuardChange in kinds
    assert notes == []
    # Before the confirmation, what is loaded and kept for boot has the guard the host has now:
    # none (so the boot file never holds an unconfirmed guard).
    first = with_observed_guard(host.firewall, None)
    assert first.table.chain(GUARD) is None and first.guard == ()
    assert first.table.chain("mesh") == host.firewall.table.chain("mesh")
    assert "chain guard" not in render(first) and "chain guard" in render(host.firewall)


def test_an_unconfirmed_change_of_a_dead_run_is_rolled_back_first() -> None:
    host = wanted_hosts(_inventory())["db-1"]
    state = NftHostState(nft=True, table=None, pending=(PendingChange("abc123", 1000),))
    changes, _ = firewall_changes(host.firewall, state, [])
    assert changes[0] == RollBackPending("abc123")
    assert changes[0].describe() == "roll back firewall change abc123, which no run confirmed"


def test_a_host_without_nft_plans_nothing_but_is_reported() -> None:
    host = wanted_hosts(_inventory())["db-1"]
    changes, _ = firewall_changes(host.firewall, NftHostState(nft=False, table=None), [])
    assert changes == []  # the plan's tool check names nft as missing instead
