"""Names, addresses and the underlay as data (pure)."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, IPv6Interface

import pytest

from wiremesh.errors import ValidationError
from wiremesh.lab import layout
from wiremesh.lab.network import Bridge, Namespace, Network, Port, Route, flat_network


def test_names_and_addresses() -> None:
    hosts = layout.host_addresses(3)
    assert [(h.name, h.netns, str(h.underlay), str(h.overlay)) for h in hosts] == [
        ("lab1", "wm-lab1", "198.51.100.11/24", "10.77.0.1"),
        ("lab2", "wm-lab2", "198.51.100.12/24", "10.77.0.2"),
        ("lab3", "wm-lab3", "198.51.100.13/24", "10.77.0.3"),
    ]


def test_every_address_of_the_largest_lab_is_in_the_underlay_and_distinct() -> None:
    hosts = layout.host_addresses(layout.MAX_HOSTS)
    ips = [h.underlay_ip for h in hosts]
    assert len(set(ips)) == layout.MAX_HOSTS
    assert all(ip in layout.UNDERLAY for ip in ips)
    assert layout.UNDERLAY_GATEWAY.ip not in ips
    assert ips[-1] == IPv4Address("198.51.100.70")


def test_link_names_fit_ifnamsiz() -> None:
    for h in layout.host_addresses(layout.MAX_HOSTS):
        for ifname in ("eth0", "eth1"):
            name = layout.veth_name(h.name, ifname)
            assert name.startswith("wm-")
            assert len(name) <= layout.IFNAMSIZ
    with pytest.raises(ValueError, match="longer than 15"):
        layout.link_name("averyverylongname")


@pytest.mark.parametrize("count", [0, 61, -1])
def test_host_count_is_checked(count: int) -> None:
    with pytest.raises(ValidationError, match="between 1 and 60"):
        layout.host_addresses(count)


def test_flat_network_batches() -> None:
    net = flat_network(layout.host_addresses(2))
    assert net.links == ["wm-pub", "wm-lab1-eth0", "wm-lab2-eth0"]
    assert net.root_batch() == [
        "link add wm-pub type bridge nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0",
        "addr add 198.51.100.1/24 dev wm-pub",
        "link set wm-pub up",
        "netns add wm-lab1",
        "link add wm-lab1-eth0 type veth peer name eth0 netns wm-lab1",
        "link set wm-lab1-eth0 addrgenmode none",
        "link set wm-lab1-eth0 master wm-pub up",
        "netns add wm-lab2",
        "link add wm-lab2-eth0 type veth peer name eth0 netns wm-lab2",
        "link set wm-lab2-eth0 addrgenmode none",
        "link set wm-lab2-eth0 master wm-pub up",
    ]
    # No route beyond the bridge's subnet: lab hosts reach nothing else.
    assert net.namespace_batch("wm-lab2") == [
        "link set lo up",
        "addr add 198.51.100.12/24 dev eth0",
        "link set eth0 up",
    ]


def test_richer_topologies_are_more_data() -> None:
    """What issue 5 needs (site bridge, IPv6, MTU, a NAT route) fits the same structures."""
    site = Bridge("wm-site-a", mtu=1400, private=True)  # no root-namespace address
    net = Network(
        bridges=(Bridge("wm-pub", (IPv4Interface("198.51.100.1/24"),)), site),
        namespaces=(
            Namespace(
                "wm-lab1",
                ports=(
                    Port(
                        "eth0",
                        "wm-lab1-eth0",
                        "wm-pub",
                        (IPv4Interface("198.51.100.11/24"), IPv6Interface("2001:db8::11/64")),
                    ),
                    Port(
                        "eth1", "wm-lab1-eth1", site.name, (IPv4Interface("192.0.2.11/24"),), 1280
                    ),
                ),
                routes=(Route("default", via="192.0.2.1"),),
            ),
        ),
    )
    root = net.root_batch()
    assert "link add wm-site-a mtu 1400 type bridge" in root[3]
    assert not [line for line in root if "dev wm-site-a" in line and "addr" in line]
    assert "link set wm-site-a addrgenmode none arp off" in root
    assert "link add wm-lab1-eth1 mtu 1280 type veth peer name eth1 mtu 1280 netns wm-lab1" in root
    inner = net.namespace_batch("wm-lab1")
    assert "addr add 2001:db8::11/64 dev eth0 nodad" in inner
    assert inner[-1] == "route add default via 192.0.2.1"
