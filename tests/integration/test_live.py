"""Live changes lose nothing: 20 mixed changes applied under a 2 ms ping between two other hosts.

One 5-host lab (lab5 joins and leaves); lab1 pings lab2 over the mesh every 2 ms, packet by packet
(:mod:`wiremesh.lab.pingprobe`), while wiremesh adds and removes a node and changes a third node's
endpoint, allowed IPs and listen port, and the mesh MTU, each applied on its own. After every change
``plan`` is empty and each host's running interface says what its config file says.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from ipaddress import ip_network

import pytest

from tests.helpers import Result, cli
from tests.integration.conftest import LAB_WAIT
from wiremesh.codec.wgquick import parse
from wiremesh.lab import Lab
from wiremesh.lab.pingprobe import PingProbe

pytestmark = pytest.mark.root

SECOND_ADDRESS = "198.51.100.113"  # a second underlay address of lab3, for endpoint changes


def wm(lab: Lab, *args: str) -> Result:
    return cli("-f", str(lab.inventory_path), *args)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    directory = tmp_path_factory.mktemp("live") / "lab"
    made = Lab.up(directory, 5, wait=LAB_WAIT)
    try:
        assert wm(made, "node", "rm", "lab5", "--forget").code == 0
        made.exec("lab3", ["ip", "address", "add", f"{SECOND_ADDRESS}/24", "dev", "eth0"])
        r = wm(made, "apply", "--yes")
        assert r.code == 0, r.out + r.err
        yield made
    finally:
        made.down()


def running_matches_file(lab: Lab, host: str) -> None:
    """``wg showconf`` equals the config file as wg-quick loads it (``wg-quick strip``).

    Private keys are compared on the host by digest: they never reach the test. Endpoints are
    compared only where the file sets one (others are learnt from the peer's packets).
    """
    script = (
        "k() { sed -n 's/^PrivateKey = //p' | sha256sum; }; "
        "wg showconf wg0 | k; wg-quick strip wg0 | k; "
        "echo @@; wg showconf wg0 | grep -v '^PrivateKey'; "
        "echo @@; wg-quick strip wg0 | grep -v '^PrivateKey'"
    )
    out = lab.exec(host, ["sh", "-c", script]).stdout
    digests, running_text, file_text = out.split("@@\n")
    running_key, file_key = digests.splitlines()
    assert running_key == file_key, f"{host}: the running private key is not the file's"
    running, in_file = parse(running_text, f"{host} showconf"), parse(file_text, f"{host} file")
    assert running.interface.listen_port == in_file.interface.listen_port, host
    want = {p.public_key: p for p in in_file.peers}
    have = {p.public_key: p for p in running.peers}
    assert set(have) == set(want), f"{host}: peers differ"
    for key, peer in want.items():
        now = have[key]
        assert set(now.allowed_ips) == set(peer.allowed_ips), (host, peer.comment)
        assert now.persistent_keepalive == peer.persistent_keepalive, (host, peer.comment)
        if peer.endpoint is not None:
            assert now.endpoint == peer.endpoint, (host, peer.comment)


def converged(lab: Lab) -> None:
    plan = json.loads(wm(lab, "plan", "--json").out)
    assert plan["up_to_date"], [h for h in plan["hosts"] if h["changes"]]
    names = [n["name"] for n in json.loads(wm(lab, "node", "ls", "--json").out)["nodes"]]
    for name in names:
        running_matches_file(lab, name)


CYCLE: list[tuple[str, list[str]]] = [
    ("add node", ["node", "add", "lab5", "--endpoint", "198.51.100.15", "--ssh", "root@lab5"]),
    ("endpoint", ["node", "set", "lab3", "--endpoint", SECOND_ADDRESS]),
    ("allowed IPs", ["node", "set", "lab3", "--allowed-ip", "172.16.3.0/24"]),
    ("listen port", ["node", "set", "lab3", "--listen-port", "51830"]),
    ("MTU", ["mesh", "set", "--mtu", "1400"]),
    ("remove node", ["node", "rm", "lab5"]),
    ("endpoint", ["node", "set", "lab3", "--endpoint", "198.51.100.13"]),
    ("allowed IPs", ["node", "set", "lab3", "--clear", "allowed_ips"]),
    ("listen port", ["node", "set", "lab3", "--clear", "listen_port"]),
    ("MTU", ["mesh", "set", "--mtu", "1420"]),
]


def test_twenty_mixed_live_changes_lose_no_packet(lab: Lab) -> None:
    addresses = {
        n["name"]: n["address"] for n in json.loads(wm(lab, "node", "ls", "--json").out)["nodes"]
    }
    probe = PingProbe(lab, "lab1", addresses["lab2"]).start()
    applied: list[str] = []
    try:
        for kind, args in CYCLE + CYCLE:
            r = wm(lab, *args)
            assert r.code == 0, r.err
            plan = json.loads(wm(lab, "plan", "--json").out)
            pinged = [h for h in plan["hosts"] if h["name"] in ("lab1", "lab2")]
            for host in pinged:  # the pinged pair's own peer entries are never named
                for change in host["changes"]:
                    assert "lab1" not in change["description"].split()
                    assert "lab2" not in change["description"].split()
            r = wm(lab, "apply", "--yes")
            assert r.code == 0, r.out + r.err
            applied.append(kind)
            converged(lab)
    finally:
        count = probe.stop()
    assert len(applied) == 20
    print(
        f"2 ms ping lab1 -> lab2 across {len(applied)} live changes: {count.sent} sent, "
        f"{len(count.lost)} lost {list(count.lost)[:20]}"
    )
    assert count.sent > 5000
    assert count.lost == (), f"lost {len(count.lost)} of {count.sent}: {count.lost[:20]}"


def test_routed_subnet_reaches_the_node_after_a_live_change(lab: Lab) -> None:
    assert wm(lab, "node", "set", "lab3", "--allowed-ip", "172.16.3.0/24").code == 0
    assert wm(lab, "apply", "--yes").code == 0
    route = lab.exec("lab1", ["ip", "-o", "route", "get", "172.16.3.1"]).stdout
    assert "dev wg0" in route
    allowed = lab.exec("lab1", ["wg", "show", "wg0", "allowed-ips"]).stdout
    assert any(
        ip_network("172.16.3.0/24") == ip_network(w, strict=False)
        for line in allowed.splitlines()
        for w in line.split()[1:]
    )
    assert wm(lab, "node", "set", "lab3", "--clear", "allowed_ips").code == 0
    assert wm(lab, "apply", "--yes").code == 0
    assert "dev wg0" not in lab.exec("lab1", ["ip", "-o", "route", "show", "172.16.3.0/24"]).stdout
    converged(lab)


FAILING_WG = """#!/bin/sh
# Test double: fails 'wg set ... endpoint ...' (after earlier steps of the same apply succeeded).
for a in "$@"; do [ "$a" = endpoint ] && { echo "injected failure" >&2; exit 1; }; done
exec /tmp/wg.real "$@"
"""


def host_state(lab: Lab, host: str) -> tuple[object, str, str]:
    """The running config without the private key (peers in key order: wireguard-go lists them in
    map order), the config file's digest, the wg0 routes."""
    text = lab.exec(host, ["sh", "-c", "wg showconf wg0 | grep -v '^PrivateKey'"]).stdout
    config = parse(text, f"{host} showconf")
    running = (
        config.interface.listen_port,
        sorted(
            (
                str(p.public_key),
                str(p.endpoint),
                sorted(map(str, p.allowed_ips)),
                p.persistent_keepalive,
            )
            for p in config.peers
        ),
    )
    digest = lab.exec(host, ["sha256sum", "/etc/wireguard/wg0.conf"]).stdout.split()[0]
    routes = lab.exec(host, ["ip", "-o", "route", "show", "dev", "wg0"]).stdout
    return running, digest, routes


def test_a_step_that_fails_midway_rolls_the_host_back(lab: Lab) -> None:
    # On lab1, every `wg set ... endpoint` fails: the allowed IPs of lab3 change first (and succeed),
    # then its endpoint fails, and lab1 must come back exactly as it was, file and interface.
    lab.exec("lab1", ["cp", "/usr/bin/wg", "/tmp/wg.real"])
    lab.exec(
        "lab1", ["sh", "-c", f"cat > /tmp/wg.fail <<'EOF'\n{FAILING_WG}EOF\nchmod 755 /tmp/wg.fail"]
    )
    lab.exec("lab1", ["mount", "--bind", "/tmp/wg.fail", "/usr/bin/wg"])
    try:
        before = host_state(lab, "lab1")
        r = wm(
            lab,
            "node",
            "set",
            "lab3",
            "--endpoint",
            SECOND_ADDRESS,
            "--allowed-ip",
            "172.16.3.0/24",
        )
        assert r.code == 0, r.err
        r = wm(lab, "apply", "--yes")
        flat = " ".join(r.out.split())
        assert r.code == 1, flat
        assert "FAILED lab1" in flat and "injected failure" in flat, flat
        assert "rolled back, the host is as it was" in flat, flat
        assert host_state(lab, "lab1") == before
        files = lab.exec("lab1", ["ls", "-a", "/etc/wireguard", "/run/wiremesh"]).stdout
        assert "wiremesh-new" not in files and "wiremesh-prev" not in files, files
        assert ".running." not in files and ".err." not in files, files
    finally:
        lab.exec("lab1", ["umount", "/usr/bin/wg"])
    r = wm(lab, "apply", "--yes")
    assert r.code == 0, r.out + r.err
    converged(lab)
    assert (
        wm(lab, "node", "set", "lab3", "--endpoint", "198.51.100.13", "--clear", "allowed_ips").code
        == 0
    )
    assert wm(lab, "apply", "--yes").code == 0
    converged(lab)
