"""Issue 5 on lab hosts: sites, NAT with a relay, IPv6, MTU auto, names, overlapping routes.

Each test builds the lab topology it needs (sites, NAT routers, IPv6, a small underlay MTU), brings
the mesh up with the real CLI over real SSH, and checks the result on the hosts themselves.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Result, cli
from tests.integration.conftest import LabFactory
from wiremesh.lab import Lab

pytestmark = pytest.mark.root


def wm(lab: Lab, *args: str) -> Result:
    """``wiremesh -f <lab inventory> ARGS`` through the real entry point."""
    return cli("-f", str(lab.inventory_path), *args)


def nodes(lab: Lab) -> dict[str, dict[str, Any]]:
    """The inventory's nodes by name, as ``node ls --json`` prints them."""
    data = json.loads(wm(lab, "node", "ls", "--json").out)
    return {n["name"]: n for n in data["nodes"]}


def apply_ok(lab: Lab, *extra: str) -> Result:
    r = wm(lab, "apply", "--yes", *extra)
    assert r.code == 0, r.out + r.err
    return r


def status(lab: Lab, *extra: str) -> tuple[int, Any]:
    r = wm(lab, "status", "--json", *extra)
    return r.code, json.loads(r.out)


def peer_endpoints(lab: Lab, host: str) -> dict[str, str]:
    """Peer public key -> endpoint, from ``wg show wg0 endpoints`` on ``host``."""
    out = lab.exec(host, ["wg", "show", "wg0", "endpoints"]).stdout
    return dict(line.split("\t") for line in out.splitlines() if "\t" in line)


def key_of(lab: Lab, host: str) -> str:
    return lab.exec(host, ["wg", "show", "wg0", "public-key"]).stdout.strip()


def counters(lab: Lab, host: str, dev: str) -> int:
    """rx + tx bytes of an interface inside a host."""
    rx = lab.exec(host, ["cat", f"/sys/class/net/{dev}/statistics/rx_bytes"]).stdout
    tx = lab.exec(host, ["cat", f"/sys/class/net/{dev}/statistics/tx_bytes"]).stdout
    return int(rx) + int(tx)


def links(report: Any) -> dict[tuple[str, str], Any]:
    """(from, to) -> the peer record of status --json."""
    out = {}
    for node in report["nodes"]:
        for peer in node["peers"]:
            out[(node["name"], peer["name"])] = peer
    return out


def test_sites_use_private_links(lab_factory: LabFactory) -> None:
    lab = lab_factory(hosts=0, sites={"a": 2, "b": 2})
    inv = nodes(lab)
    assert [inv[n]["site"] for n in ("lab1", "lab2", "lab3", "lab4")] == ["a", "a", "b", "b"]
    apply_ok(lab)
    code, report = status(lab, "--ping")
    assert code == 0 and report["healthy"], report
    # wg show: the same-site peer at its private address, the other site's at the public one
    endpoints = peer_endpoints(lab, "lab1")
    private2 = str(inv["lab2"]["private_endpoint"]).split(":")[0]
    assert endpoints[key_of(lab, "lab2")].split(":")[0] == private2
    assert endpoints[key_of(lab, "lab3")].startswith("198.51.100.13:")
    # traffic between lab1 and lab2 crosses the private bridge (eth1), not the public one
    overlay2 = str(inv["lab2"]["address"])
    before_private, before_public = counters(lab, "lab1", "eth1"), counters(lab, "lab1", "eth0")
    lab.exec("lab1", ["ping", "-q", "-c", "20", "-i", "0.01", "-s", "1000", overlay2])
    grew_private = counters(lab, "lab1", "eth1") - before_private
    grew_public = counters(lab, "lab1", "eth0") - before_public
    assert grew_private > 40_000 and grew_public < 10_000, (grew_private, grew_public)
    # toward the other site, the public link carries it
    overlay3 = str(inv["lab3"]["address"])
    before_private, before_public = counters(lab, "lab1", "eth1"), counters(lab, "lab1", "eth0")
    lab.exec("lab1", ["ping", "-q", "-c", "20", "-i", "0.01", "-s", "1000", overlay3])
    assert counters(lab, "lab1", "eth0") - before_public > 40_000
    assert counters(lab, "lab1", "eth1") - before_private < 10_000


def test_nat_hosts_reach_each_other_through_the_relay(lab_factory: LabFactory) -> None:
    lab = lab_factory(hosts=2, nats={"home": 2})
    inv = nodes(lab)
    assert inv["lab3"]["endpoint"] is None and inv["lab4"]["endpoint"] is None
    apply_ok(lab)
    code, report = status(lab, "--ping")
    assert code == 0 and report["healthy"], json.dumps(report, indent=1)
    every = links(report)
    assert len(every) == 12 and all(p["up"] for p in every.values())
    # the two NAT hosts share a router without hairpin NAT: their link goes through the relay
    assert every[("lab3", "lab4")]["link"] == "relayed"
    assert every[("lab3", "lab4")]["via"] == "lab1"
    assert every[("lab4", "lab3")]["link"] == "relayed"
    assert every[("lab3", "lab1")]["link"] == "direct"
    assert every[("lab1", "lab3")]["link"] == "direct"
    assert report["links"]["relayed"] == 2
    # a second apply changes nothing (the probes stay, the relay stays)
    r = wm(lab, "apply", "--yes")
    assert r.code == 0 and "nothing to do" in r.out, r.out
    # the relay's interface goes down: direct is impossible, so those links are down, and say why
    lab.exec("lab1", ["ip", "link", "set", "wg0", "down"])
    code, report = status(lab, "--ping")
    assert code == 1 and not report["healthy"]
    every = links(report)
    down = every[("lab3", "lab4")]
    assert down["link"] == "down"
    assert "lab1" in str(down["reason"]) and "down" in str(down["reason"])
    assert every[("lab3", "lab2")]["link"] == "direct"  # unaffected
    assert down["reason"] == "relayed via lab1, whose interface is down"
    r = wm(lab, "status")
    assert "interface is down" in r.out
    apply_ok(lab)  # sets it up again
    code, report = status(lab, "--ping")
    assert code == 0, report


def test_ipv6_underlay_and_overlay(lab_factory: LabFactory) -> None:
    lab = lab_factory(hosts=3, ipv6=True)
    inv = nodes(lab)
    assert str(inv["lab1"]["endpoint"]).startswith("[2001:db8::")
    apply_ok(lab)
    code, report = status(lab, "--ping")
    assert code == 0, report
    pings = report["ping"]
    v6 = [p for p in pings if ":" in p["address"]]
    assert len(v6) == 6 and all(p["loss"] < 1 for p in v6)
    endpoints = peer_endpoints(lab, "lab1")
    assert all(e.startswith("[2001:db8::") for e in endpoints.values()), endpoints
    for host in ("lab1", "lab2", "lab3"):
        for target in ("lab1", "lab2", "lab3"):
            if host != target:
                lab.exec(host, ["ping", "-6", "-c", "1", "-W", "2", str(inv[target]["address6"])])


def test_mtu_auto_fits_the_smallest_link(lab_factory: LabFactory) -> None:
    lab = lab_factory(hosts=3, underlay_mtu={"lab2": 1280})
    assert wm(lab, "mesh", "set", "--mtu", "auto").code == 0
    apply_ok(lab)
    code, report = status(lab, "--ping")
    assert code == 0, report
    mtus = {n["name"]: n["mtu"] for n in report["nodes"]}
    assert mtus == {"lab1": 1200, "lab2": 1200, "lab3": 1200}
    inv = nodes(lab)
    payload = 1200 - 28  # IPv4 + ICMP headers
    for host in inv:
        for target in inv:
            if host != target:
                address = str(inv[target]["address"])
                lab.exec(
                    host, ["ping", "-M", "do", "-c", "1", "-W", "2", "-s", str(payload), address]
                )
    # status shows the chosen MTU for people too
    assert "mtu 1200" in wm(lab, "status").out


def test_names_in_etc_hosts_and_overlapping_routes(lab_factory: LabFactory, tmp_path: Path) -> None:
    lab = lab_factory(hosts=3)
    apply_ok(lab)
    for host in ("lab1", "lab2", "lab3"):
        for target in ("lab1", "lab2", "lab3"):
            lab.exec(host, ["ping", "-c", "1", "-W", "2", f"{target}.lab"])
    hosts_file = lab.exec("lab1", ["cat", "/etc/hosts"]).stdout
    assert "# BEGIN wiremesh lab" in hosts_file and "10.77.0.2 lab2.lab" in hosts_file
    assert not Path("/etc/hosts").read_text().count("wiremesh")  # the machine's own file untouched
    # node rm: the name is gone everywhere, the removed host's block too
    assert wm(lab, "node", "rm", "lab3").code == 0
    apply_ok(lab)
    for host in ("lab1", "lab2", "lab3"):
        gone = lab.exec(host, ["getent", "hosts", "lab3.lab"], check=False)
        assert gone.returncode != 0, host
    assert "wiremesh" not in lab.exec("lab3", ["cat", "/etc/hosts"]).stdout
    # a routed subnet behind lab2 (a veth stands in for a VPC link: this kernel has no dummy):
    # every other host routes it to lab2, which forwards
    lab.exec("lab2", ["ip", "link", "add", "vpc0", "type", "veth", "peer", "name", "vpc1"])
    lab.exec("lab2", ["ip", "link", "set", "vpc1", "up"])
    lab.exec("lab2", ["ip", "addr", "add", "172.31.5.1/24", "dev", "vpc0"])
    lab.exec("lab2", ["ip", "link", "set", "vpc0", "up"])
    assert wm(lab, "node", "set", "lab2", "--allowed-ip", "172.31.5.0/24").code == 0
    apply_ok(lab)
    assert "172.31.5.0/24 dev wg0" in lab.exec("lab1", ["ip", "route"]).stdout
    lab.exec("lab1", ["ping", "-c", "1", "-W", "2", "172.31.5.1"])
    assert lab.exec("lab2", ["sysctl", "-n", "net.ipv4.ip_forward"]).stdout.strip() == "1"
    # ...and the sysctl file holds exactly the codec's setting (issue 10: rendered structurally)
    from wiremesh.codec import sysctl

    text = lab.exec("lab2", ["cat", "/etc/sysctl.d/60-wiremesh.conf"]).stdout
    assert text.split("\n")[0] == sysctl.HEADER
    assert sysctl.parse(text) == sysctl.forwarding(True, False)
    # a host with a route that overlaps the mesh: plan says so, apply refuses without --force
    lab.exec("lab2", ["ip", "route", "add", "10.77.0.0/16", "dev", "eth0"])
    assert wm(lab, "node", "set", "lab1", "--listen-port", "51821").code == 0
    plan = wm(lab, "plan")
    flat = " ".join(plan.out.split())
    assert (
        "lab2" in flat
        and "route 10.77.0.0/16 dev eth0 overlaps the mesh network 10.77.0.0/24" in flat
    )
    before = lab.exec("lab1", ["sha256sum", "/etc/wireguard/wg0.conf"]).stdout
    r = wm(lab, "apply", "--yes")
    assert r.code == 2
    assert "lab2: route 10.77.0.0/16 dev eth0 overlaps" in " ".join(r.err.split())
    assert lab.exec("lab1", ["sha256sum", "/etc/wireguard/wg0.conf"]).stdout == before
    r = wm(lab, "apply", "--yes", "--force")
    assert r.code == 0, r.out
    port = lab.exec("lab1", ["wg", "show", "wg0", "listen-port"]).stdout.strip()
    assert port == "51821"
    hosts = {h["name"]: h for h in json.loads(wm(lab, "plan", "--json").out)["hosts"]}
    assert hosts["lab2"]["conflicts"] == [
        "route 10.77.0.0/16 dev eth0 overlaps the mesh network 10.77.0.0/24"
    ]
    assert hosts["lab1"]["conflicts"] == []


def test_nat_hosts_behind_two_routers_punch_a_direct_path(lab_factory: LabFactory) -> None:
    lab = lab_factory(hosts=1, nats={"a": 1, "b": 1})
    apply_ok(lab)
    # The direct path is set up and tried; it may need WireGuard's 5 s handshake retry, meanwhile the
    # pair goes through the relay. A later apply moves it to the direct path once it works.
    _, report = status(lab, "--ping")
    assert report["healthy"]
    for _ in range(6):
        if links(report)[("lab2", "lab3")]["link"] == "direct":
            break
        time.sleep(2)
        apply_ok(lab)
        _, report = status(lab, "--ping")
    every = links(report)
    assert every[("lab2", "lab3")]["link"] == "direct", every[("lab2", "lab3")]
    assert every[("lab3", "lab2")]["link"] == "direct"
    assert str(every[("lab2", "lab3")]["endpoint"]).startswith(
        "198.51.100.20"
    )  # a router's address
    assert report["healthy"] and report["links"]["relayed"] == 0
