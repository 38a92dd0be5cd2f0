"""Lab topologies (issue 5), pure: option parsing, the addressing plan, the network and NAT rules."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, ip_network

import pytest

from tests.helpers import cli
from wiremesh.errors import ValidationError
from wiremesh.lab import layout, nat
from wiremesh.lab.network import lab_network
from wiremesh.lab.spec import Group, LabSpec, make_spec, parse_group, parse_mtu
from wiremesh.lab.topology import plan_lab

LAB_RANGES = [ip_network(n) for n in ("198.51.100.0/24", "203.0.113.0/24", "192.0.2.0/24")]


def test_parse_group_and_mtu() -> None:
    assert parse_group("hk:3", "--site") == Group("hk", 3)
    assert parse_group(" home : 2", "--nat") == Group("home", 2)
    assert parse_mtu("1400") == (None, 1400)
    assert parse_mtu("lab2=1280") == ("lab2", 1280)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hk", "not NAME:COUNT"),
        ("hk:", "not NAME:COUNT"),
        ("hk:x", "not NAME:COUNT"),
        ("hk:-1", "not NAME:COUNT"),
        (":3", "name '' is not valid"),
        ("HK:3", "name 'HK' is not valid"),
        ("toolong:3", "name 'toolong' is not valid"),
        ("-a:3", "is not valid"),
    ],
)
def test_bad_groups_are_refused_with_a_hint(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        parse_group(text, "--site")
    assert err.value.hint


@pytest.mark.parametrize("text", ["", "x", "lab2=", "=1280", "lab2=12a", "lab2:1280"])
def test_bad_mtu_options_are_refused(text: str) -> None:
    with pytest.raises(ValidationError, match=r"not \[HOST=\]MTU"):
        parse_mtu(text)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "--hosts is required"),
        ({"public": 0}, "between 1 and 60"),
        ({"public": 61}, "between 1 and 60"),
        ({"public": -1, "sites": {"a": 1}}, "between 0 and 60"),
        ({"public": 50, "sites": {"a": 11}}, "61 hosts; at most 60"),
        ({"sites": {"a": 0}}, "between 1 and 52"),
        ({"sites": {"a": 53}}, "between 1 and 52"),
        ({"sites": {f"s{i}": 1 for i in range(5)}}, "at most 4 --site"),
        ({"nats": {f"n{i}": 1 for i in range(4)}}, "at most 3 --nat"),
        ({"sites": {"x": 1}, "nats": {"x": 1}}, "'x' is used by more than one"),
        ({"public": 1, "nats": {"home": 1}, "ipv6": True}, "--ipv6 cannot be combined with --nat"),
        ({"public": 2, "underlay_mtu": {"lab3": 1400}}, "no host 'lab3'"),
        ({"public": 2, "underlay_mtu": 575}, "between 576 and 9000"),
        ({"public": 2, "underlay_mtu": 9001}, "between 576 and 9000"),
        ({"public": 2, "ipv6": True, "underlay_mtu": {"lab1": 1279}}, "IPv6 needs at least 1280"),
    ],
)
def test_make_spec_refuses(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message) as err:
        make_spec(**kwargs)  # type: ignore[arg-type]
    assert err.value.hint


def test_make_spec_accepts_and_orders_mtus() -> None:
    spec = make_spec(0, [Group("a", 2)], {"home": 1}, underlay_mtu=[("lab3", 1280), (None, 1400)])
    assert spec.total == 3
    assert spec.mtu_all == 1400
    assert [spec.host_mtu(f"lab{i}") for i in (1, 2, 3)] == [1400, 1400, 1280]
    assert LabSpec.from_json(spec.to_json()) == spec
    assert make_spec(3) == LabSpec(public=3)


def test_plan_names_roles_and_addresses() -> None:
    spec = make_spec(1, {"a": 2, "b": 1}, {"home": 2}, underlay_mtu={"lab2": 1280})
    plan = plan_lab(spec)
    rows = [
        (h.name, h.role, h.group, str(h.public), str(h.private), str(h.gateway), h.mtu)
        for h in plan.hosts
    ]
    assert rows == [
        ("lab1", "public", None, "198.51.100.11/24", "None", "None", None),
        ("lab2", "site", "a", "198.51.100.12/24", "203.0.113.11/26", "None", 1280),
        ("lab3", "site", "a", "198.51.100.13/24", "203.0.113.12/26", "None", None),
        ("lab4", "site", "b", "198.51.100.14/24", "203.0.113.75/26", "None", None),
        ("lab5", "nat", "home", "None", "192.0.2.75/26", "192.0.2.65", None),
        ("lab6", "nat", "home", "None", "192.0.2.76/26", "192.0.2.65", None),
    ]
    assert [(s.name, s.bridge, str(s.network)) for s in plan.sites] == [
        ("a", "wm-site-a", "203.0.113.0/26"),
        ("b", "wm-site-b", "203.0.113.64/26"),
    ]
    (router,) = plan.routers
    assert (router.netns, str(router.wan), str(router.lan), router.lan_bridge) == (
        "wm-nat-home",
        "198.51.100.201/24",
        "192.0.2.65/26",
        "wm-lan-home",
    )
    assert [(f.port, f.host, str(f.to)) for f in router.forwards] == [
        (2215, "lab5", "192.0.2.75"),
        (2216, "lab6", "192.0.2.76"),
    ]
    nat_host = plan.host("lab5")
    assert (nat_host.ssh_address, nat_host.ssh_port) == (IPv4Address("198.51.100.201"), 2215)
    assert nat_host.nat_ip == IPv4Address("198.51.100.201")
    assert nat_host.listen == [IPv4Address("192.0.2.75")]
    assert (plan.host("lab2").ssh_address, plan.host("lab2").ssh_port) == (
        IPv4Address("198.51.100.12"),
        22,
    )
    assert plan.relay == "lab1"


def test_relay_is_the_first_host_with_a_public_endpoint() -> None:
    assert plan_lab(make_spec(2)).relay is None  # no NAT hosts: no relay needed
    assert plan_lab(make_spec(0, {"a": 1}, {"home": 1})).relay == "lab1"  # a site host
    assert plan_lab(make_spec(0, (), {"home": 2})).relay is None  # nobody could relay


def test_largest_labs_fit_the_plan() -> None:
    sites = {f"s{i}": 13 for i in range(4)}  # 52 site hosts
    spec = make_spec(5, sites, {"n1": 1, "n2": 1, "n3": 1})
    plan = plan_lab(spec)
    assert len(plan.hosts) == 60
    addresses = [h.private.ip for h in plan.hosts if h.private] + [
        h.public.ip for h in plan.hosts if h.public
    ]
    addresses += [r.wan.ip for r in plan.routers] + [r.lan.ip for r in plan.routers]
    assert len(set(addresses)) == len(addresses)
    for h in plan.hosts:
        if h.private is not None:
            assert h.private.ip not in (
                h.private.network.network_address,
                h.private.network.broadcast_address,
            )
    big = plan_lab(make_spec(0, {"a": 52}, {"b": 8}))
    assert str(big.host("lab52").private) == "203.0.113.62/26"
    # Nothing of the lab is in 192.0.2.0/26, where this machine's own uplink (192.0.2.2) lives.
    assert not [a for a in addresses if a in IPv4Network("192.0.2.0/26")]
    assert all(any(a in r for r in LAB_RANGES) for a in addresses)


def test_ipv6_plan() -> None:
    plan = plan_lab(make_spec(2, {"a": 1}, ipv6=True))
    assert [str(h.public6) for h in plan.hosts] == [
        "2001:db8::11/64",
        "2001:db8::12/64",
        "2001:db8::13/64",
    ]
    assert [h.overlay6 for h in plan.hosts] == [IPv6Address(f"fd77::{i}") for i in (1, 2, 3)]
    assert plan.host("lab1").listen == [IPv4Address("198.51.100.11"), IPv6Address("2001:db8::11")]
    assert str(plan_lab(make_spec(60, ipv6=True)).host("lab60").public6) == "2001:db8::70/64"


def test_network_of_sites_and_nats() -> None:
    plan = plan_lab(make_spec(1, {"a": 1}, {"home": 1}, underlay_mtu={"lab2": 1280}))
    net = lab_network(plan)
    assert [(b.name, [str(a) for a in b.addresses], b.private) for b in net.bridges] == [
        ("wm-pub", ["198.51.100.1/24"], False),
        ("wm-site-a", [], True),
        ("wm-lan-home", [], True),
    ]
    root = net.root_batch()
    # The root namespace gets an address on the public bridge only, none from the private ranges.
    assert [line for line in root if line.startswith("addr")] == [
        "addr add 198.51.100.1/24 dev wm-pub"
    ]
    assert "link set wm-lan-home addrgenmode none arp off" in root
    assert "link add wm-lab2-eth1 mtu 1280 type veth peer name eth1 mtu 1280 netns wm-lab2" in root
    assert "link set wm-lab2-eth1 master wm-site-a up" in root
    assert "link set wm-lab3-eth0 master wm-lan-home up" in root
    assert "link add wm-nat-home-w type veth peer name wan netns wm-nat-home" in root
    assert "link set wm-nat-home-l master wm-lan-home up" in root
    assert net.namespace_batch("wm-lab2") == [
        "link set lo up",
        "addr add 198.51.100.12/24 dev eth0",
        "link set eth0 up",
        "addr add 203.0.113.11/26 dev eth1",
        "link set eth1 up",
    ]
    assert net.namespace_batch("wm-lab3") == [
        "link set lo up",
        "addr add 192.0.2.75/26 dev eth0",
        "link set eth0 up",
        "route add default via 192.0.2.65",
    ]
    assert net.namespace_batch("wm-nat-home")[1:] == [
        "addr add 198.51.100.201/24 dev wan",
        "link set wan up",
        "addr add 192.0.2.65/26 dev lan",
        "link set lan up",
    ]
    assert all(len(name) <= layout.IFNAMSIZ for name in net.links)


def test_ipv6_network() -> None:
    net = lab_network(plan_lab(make_spec(1, ipv6=True)))
    root = net.root_batch()
    assert "addr add 2001:db8::1/64 dev wm-pub nodad" in root
    assert "addr add 2001:db8::11/64 dev eth0 nodad" in net.namespace_batch("wm-lab1")


def test_router_rules() -> None:
    plan = plan_lab(make_spec(0, (), {"home": 2}))
    rules = nat.router_rules(plan.routers[0]).splitlines()
    assert "-A POSTROUTING -s 192.0.2.64/26 -o wan -j MASQUERADE" in rules
    forwards = [r for r in rules if "DNAT --to-destination" in r]
    assert forwards == [
        "-A PREROUTING -i wan -d 198.51.100.201/32 -p tcp -m tcp --dport 2211"
        " -j DNAT --to-destination 192.0.2.75:22",
        "-A PREROUTING -i wan -d 198.51.100.201/32 -p tcp -m tcp --dport 2212"
        " -j DNAT --to-destination 192.0.2.76:22",
    ]
    # Nothing from outside gets in but answers and the ssh forwards: no port forward for WireGuard.
    assert ":FORWARD DROP [0:0]" in rules
    assert [r for r in rules if r.startswith("-A FORWARD -i wan")] == [
        "-A FORWARD -i wan -o lan -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        "-A FORWARD -i wan -o lan -p tcp -m conntrack --ctstate DNAT -j ACCEPT",
    ]
    assert not [r for r in rules if "udp" in r]
    assert rules.count("COMMIT") == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--site", "hk"], "--site 'hk' is not NAME:COUNT"),
        (["--nat", "Home:2"], "--nat name 'Home' is not valid"),
        (["--hosts", "1", "--underlay-mtu", "lab9=1400"], "no host 'lab9'"),
        (["--hosts", "1", "--underlay-mtu", "big"], "not [HOST=]MTU"),
        (["--hosts", "0"], "--hosts must be between 1 and 60"),
        (["--hosts", "59", "--site", "a:2"], "61 hosts"),
    ],
)
def test_cli_refuses_bad_topologies_with_exit_2(
    args: list[str], message: str, tmp_path: object
) -> None:
    r = cli("lab", "up", *args, "--dir", f"{tmp_path}/lab")
    assert r.code == 2, r.err
    assert message in r.err
    assert "hint:" in r.err
