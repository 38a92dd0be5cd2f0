"""Issue 4 on real hosts: plan/apply/status over real SSH to lab hosts running real wireguard-go.

One 6-host lab for the module; the tests run in order and build on each other (a scenario):
bring-up of 5, idempotence, a live add under a 10 ms ping, removal, a host without sshd, and at the
end a check that no private key of any host ever reached the operator's side.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Result, cli
from tests.integration.conftest import LAB_WAIT
from wiremesh.lab import Lab
from wiremesh.lab.pingprobe import PingProbe

pytestmark = pytest.mark.root

TRANSCRIPT: list[str] = []  # everything every command printed, for the private key check


def wm(lab: Lab, *args: str) -> Result:
    """``wiremesh -f <lab inventory> ARGS`` through the real entry point, with --debug logs."""
    result = cli("--debug", "-f", str(lab.inventory_path), *args)
    TRANSCRIPT.extend([result.out, result.err])
    return result


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """Six lab hosts; the inventory starts with lab1..lab5 (lab6 joins later)."""
    directory = tmp_path_factory.mktemp("converge") / "lab"
    made = Lab.up(directory, 6, wait=LAB_WAIT)
    try:
        assert cli("-f", str(made.inventory_path), "node", "rm", "lab6", "--forget").code == 0
        yield made
    finally:
        made.down()


def host_files(lab: Lab, name: str) -> dict[str, tuple[str, str]]:
    """sha256 and mtime (ns) of every file under /etc/wireguard and /run/wiremesh on a host."""
    script = (
        "for f in $(find /etc/wireguard /run/wiremesh -type f 2>/dev/null | sort); do "
        'echo "$f $(sha256sum < "$f" | cut -c1-64) $(stat -c %Y.%y "$f")"; done'
    )
    out = lab.exec(name, ["sh", "-c", script]).stdout
    return {
        line.split()[0]: (line.split()[1], " ".join(line.split()[2:])) for line in out.splitlines()
    }


def peers(lab: Lab, name: str) -> dict[str, dict[str, int]]:
    """Peers of wg0 on a host: public key -> rx bytes and latest handshake."""
    out = lab.exec(name, ["wg", "show", "wg0", "dump"]).stdout.splitlines()[1:]
    return {
        f[0]: {"rx": int(f[5]), "handshake": int(f[4])} for f in (line.split("\t") for line in out)
    }


def mesh_addresses(lab: Lab) -> dict[str, str]:
    """Node name -> overlay address, from the inventory."""
    data = json.loads(cli("-f", str(lab.inventory_path), "node", "ls", "--json").out)
    return {n["name"]: n["address"] for n in data["nodes"]}


def test_cold_apply_gives_a_full_mesh(lab: Lab) -> None:
    plan = wm(lab, "plan", "--json")
    assert plan.code == 0, plan.err
    hosts = json.loads(plan.out)["hosts"]
    assert [h["name"] for h in hosts] == ["lab1", "lab2", "lab3", "lab4", "lab5"]
    assert all("bring_up" in {c["kind"] for c in h["changes"]} for h in hosts)

    r = wm(lab, "apply")  # no TTY and no --yes: refused, nothing done
    assert r.code == 2
    assert "--yes" in r.err
    assert lab.exec("lab1", ["sh", "-c", "ls /etc/wireguard | wc -l"]).stdout.strip() == "0"

    r = wm(lab, "apply", "--yes")
    assert r.code == 0, r.out + r.err
    addresses = mesh_addresses(lab)
    for source in addresses:
        for target, address in addresses.items():
            if source != target:
                lab.exec(source, ["ping", "-c", "1", "-W", "2", address])
    r = wm(lab, "status", "--json")
    assert r.code == 0, r.out
    status = json.loads(r.out)
    assert status["healthy"] is True
    assert status["links"] == {
        "expected": 20,
        "up": 20,
        "direct": 20,
        "relayed": 0,
        "idle": 0,
        "down": 0,
    }
    for node in status["nodes"]:
        assert node["reachable"] and node["interface_up"]
        assert len(node["peers"]) == 4
        for peer in node["peers"]:
            assert peer["latest_handshake_age_s"] is not None
            assert peer["rx_bytes"] > 0 and peer["tx_bytes"] > 0
            assert re.fullmatch(r"198\.51\.100\.\d+:51820", peer["endpoint"])
    r = wm(lab, "status", "--ping", "--json")
    assert r.code == 0
    pings = json.loads(r.out)["ping"]
    assert len(pings) == 20
    assert all(p["loss"] < 1 and p["rtt_ms"] is not None for p in pings)
    # The config on the host is ours, 0600, and the host's key file is 0600.
    modes = lab.exec(
        "lab1", ["stat", "-c", "%a %n", "/etc/wireguard/wg0.conf", "/etc/wireguard/wg0.key"]
    )
    assert modes.stdout.split() == [
        "600",
        "/etc/wireguard/wg0.conf",
        "600",
        "/etc/wireguard/wg0.key",
    ]
    assert lab.exec("lab1", ["head", "-1", "/etc/wireguard/wg0.conf"]).stdout.startswith(
        "# wiremesh: managed file"
    )


def test_second_apply_changes_nothing(lab: Lab) -> None:
    before = {h.name: host_files(lab, h.name) for h in lab.hosts}
    inventory_before = lab.inventory_path.read_bytes()
    r = wm(lab, "plan", "--json")
    assert json.loads(r.out)["up_to_date"] is True
    r = wm(lab, "apply", "--yes")
    assert r.code == 0
    assert "nothing to do" in r.out
    after = {h.name: host_files(lab, h.name) for h in lab.hosts}
    assert after == before  # same contents and same mtimes: nothing was written
    assert lab.inventory_path.read_bytes() == inventory_before


def test_live_add_loses_no_packet(lab: Lab) -> None:
    r = wm(lab, "node", "add", "lab6", "--endpoint", "198.51.100.16", "--ssh", "root@lab6")
    assert r.code == 0, r.err
    plan = json.loads(wm(lab, "plan", "--json").out)
    for host in plan["hosts"]:
        kinds = sorted(c["kind"] for c in host["changes"])
        if host["name"] == "lab6":
            assert "bring_up" in kinds
        else:  # only one peer added on each existing host (and its config file)
            assert kinds == ["add_peer", "set_hosts_block", "write_config"], host
            assert "lab6" in host["changes"][1]["description"]
    before = {h: peers(lab, h) for h in ("lab1", "lab2", "lab3", "lab4", "lab5")}
    target = mesh_addresses(lab)["lab2"]
    # 2 ms pings from lab1 to lab2 over the tunnel across the whole apply, counted per packet.
    probe = PingProbe(lab, "lab1", target).start()
    try:
        r = wm(lab, "apply", "--yes")
        time.sleep(0.5)
    finally:
        count = probe.stop()
    assert r.code == 0, r.out + r.err
    print(f"2 ms ping lab1 -> lab2 across the live add: {count.sent} sent, {len(count.lost)} lost")
    assert count.sent > 300, count
    assert count.lost == (), f"lost {len(count.lost)} of {count.sent}: {count.lost[:20]}"
    for name, old in before.items():
        now = peers(lab, name)
        assert len(now) == 5
        added = set(now) - set(old)
        assert len(added) == 1  # the one new peer
        for key, stats in old.items():  # every old peer kept its session and counters
            assert now[key]["rx"] >= stats["rx"]  # a re-created peer starts again from 0
            assert now[key]["handshake"] >= stats["handshake"]
    r = wm(lab, "status", "--ping", "--json")
    assert json.loads(r.out)["links"]["up"] == 30


def test_node_rm_takes_it_out_everywhere(lab: Lab) -> None:
    key = lab.exec("lab5", ["wg", "show", "wg0", "public-key"]).stdout.strip()
    assert wm(lab, "node", "rm", "lab5").code == 0
    assert "[[removed]]" in lab.inventory_path.read_text()
    r = wm(lab, "apply", "--yes")
    assert r.code == 0, r.out + r.err
    for name in ("lab1", "lab2", "lab3", "lab4", "lab6"):
        assert key not in peers(lab, name)
        assert len(peers(lab, name)) == 4
    gone = lab.exec("lab5", ["ip", "link", "show", "wg0"], check=False)
    assert gone.returncode != 0
    assert lab.exec("lab5", ["ls", "/etc/wireguard"]).stdout.strip() == ""
    assert "[[removed]]" not in lab.inventory_path.read_text()
    r = wm(lab, "status", "--json")
    assert [n["name"] for n in json.loads(r.out)["nodes"]] == [
        "lab1",
        "lab2",
        "lab3",
        "lab4",
        "lab6",
    ]


def test_unreachable_host_fails_alone_and_converges_later(lab: Lab) -> None:
    # A change that touches every host: a new MTU.
    text = lab.inventory_path.read_text().replace("mtu = 1420", "mtu = 1400")
    lab.inventory_path.write_text(text)
    lab.stop_sshd("lab3")
    try:
        r = wm(lab, "apply", "--yes")
        assert r.code == 1
        assert "FAILED lab3" in " ".join(r.out.split())
        assert "cannot connect" in r.out
        for name in ("lab1", "lab2", "lab4", "lab6"):
            assert "mtu 1400" in lab.exec(name, ["ip", "link", "show", "wg0"]).stdout
        assert "mtu 1420" in lab.exec("lab3", ["ip", "link", "show", "wg0"]).stdout
    finally:
        lab.start_sshd("lab3")
    r = wm(lab, "apply", "--yes")
    assert r.code == 0, r.out
    assert "mtu 1400" in lab.exec("lab3", ["ip", "link", "show", "wg0"]).stdout
    assert wm(lab, "status", "--ping", "--json").code == 0


def test_unknown_host_key_is_refused_unless_accepted(lab: Lab, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    known = tmp_path / "known_hosts"
    text = lab.ssh_config_path.read_text().replace(str(lab.known_hosts_path), str(known))
    config.write_text(text)
    r = wm(lab, "--ssh-config", str(config), "plan")
    assert r.code == 1
    # The hint names the UserKnownHostsFile in use, not ~/.ssh/known_hosts (issue 10).
    assert f"is not in {known}" in " ".join(r.out.split())
    assert f">> {known}" in " ".join(r.out.split())
    assert "--accept-new-host-keys" in " ".join(r.out.split())
    r = wm(lab, "--ssh-config", str(config), "plan", "--accept-new-host-keys")
    assert r.code == 0, r.out
    assert known.read_text().count("ssh-ed25519") == 5
    # A changed key is refused even with --accept-new-host-keys.
    lines = known.read_text().splitlines()
    other = lines[1].split()[2]
    lines[0] = " ".join([*lines[0].split()[:2], other])
    known.write_text("\n".join(lines) + "\n")
    r = wm(lab, "--ssh-config", str(config), "plan", "--accept-new-host-keys")
    assert r.code == 1
    assert "has CHANGED" in " ".join(r.out.split())


def test_config_that_fails_to_load_is_rolled_back(lab: Lab) -> None:
    # Another WireGuard interface holds UDP 51821 on lab1, so the new ListenPort cannot be bound:
    # `wg set listen-port` fails, and apply must put the previous state and config back.
    lab.exec("lab1", ["wireguard-go", "wg9"])
    lab.exec("lab1", ["wg", "set", "wg9", "listen-port", "51821"])
    try:
        before = host_files(lab, "lab1")["/etc/wireguard/wg0.conf"][0]
        assert wm(lab, "node", "set", "lab1", "--listen-port", "51821").code == 0
        plan = json.loads(wm(lab, "plan", "--json", "lab1").out)
        assert "listen port 51820 → 51821" in [
            c["description"] for c in plan["hosts"][0]["changes"]
        ]
        r = wm(lab, "apply", "--yes")
        assert r.code == 1
        flat = " ".join(r.out.split())
        assert "FAILED lab1" in flat
        assert "rolled back, the host is as it was" in flat, flat
        assert host_files(lab, "lab1")["/etc/wireguard/wg0.conf"][0] == before
        assert lab.exec("lab1", ["wg", "show", "wg0", "listen-port"]).stdout.strip() == "51820"
        lab.exec("lab1", ["ping", "-c", "1", "-W", "2", mesh_addresses(lab)["lab2"]])
    finally:
        lab.exec("lab1", ["ip", "link", "del", "wg9"], check=False)
    r = wm(lab, "apply", "--yes")
    assert r.code == 0, r.out
    assert lab.exec("lab1", ["wg", "show", "wg0", "listen-port"]).stdout.strip() == "51821"
    assert wm(lab, "node", "set", "lab1", "--clear", "listen_port").code == 0
    assert wm(lab, "apply", "--yes").code == 0
    assert lab.exec("lab1", ["wg", "show", "wg0", "listen-port"]).stdout.strip() == "51820"
    assert wm(lab, "status", "--ping", "--json").code == 0


def test_no_private_key_reaches_the_operator(lab: Lab) -> None:
    keys = {}
    for host in lab.hosts:
        got = lab.exec(host.name, ["cat", "/etc/wireguard/wg0.key"], check=False)
        if got.returncode == 0:
            keys[host.name] = got.stdout.strip()
    assert len(keys) >= 5
    everything = "\n".join(TRANSCRIPT)
    assert TRANSCRIPT
    files = [
        p for p in lab.dir.rglob("*") if p.is_file() and "hosts" not in p.relative_to(lab.dir).parts
    ]
    for name, key in keys.items():
        assert key not in everything, f"{name}'s private key appeared in command output"
        for path in files:
            assert key.encode() not in path.read_bytes(), f"{name}'s private key is in {path}"
        # the key file itself never left the host: the operator has no .keys directory either
    assert not (lab.dir / "wiremesh.keys").exists()
    digest = {hashlib.sha256(k.encode()).hexdigest() for k in keys.values()}
    assert len(digest) == len(keys)
