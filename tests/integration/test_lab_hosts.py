"""Issue 3, "it must show" 1: three lab hosts, real SSH with strict host keys, isolation, wireguard-go."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import cli
from wiremesh.lab import Lab, LabCommandError

pytestmark = pytest.mark.root


def ssh(lab: Lab, host: str, command: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """The real OpenSSH client with the lab's ssh_config (no prompts: a failure fails)."""
    return subprocess.run(
        ["ssh", "-F", str(lab.ssh_config_path), "-o", "BatchMode=yes", *extra, host, command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_three_hosts_are_up(lab: Lab) -> None:
    assert [h.name for h in lab.hosts] == ["lab1", "lab2", "lab3"]
    assert [str(h.underlay_ip) for h in lab.hosts] == [
        "198.51.100.11",
        "198.51.100.12",
        "198.51.100.13",
    ]
    assert lab.complete
    r = cli("lab", "ls", "--dir", lab.dir, "--json")
    assert r.code == 0, r.err
    listed = json.loads(r.out)
    assert [(h["name"], h["running"], h["sshd"]) for h in listed["hosts"]] == [
        ("lab1", True, True),
        ("lab2", True, True),
        ("lab3", True, True),
    ]
    assert lab.inventory_path.read_text().count("[[node]]") == 3


def test_ssh_with_strict_host_key_checking(lab: Lab) -> None:
    config = lab.ssh_config_path.read_text()
    assert config.count("StrictHostKeyChecking yes") == 3
    assert "accept-new" not in config
    for h in lab.hosts:
        r = ssh(lab, h.name, "hostname; id -u")
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == [h.name, "0"]
    lines = lab.known_hosts_path.read_text().splitlines()
    assert [line.split()[0] for line in lines] == [f"{h.name},{h.underlay_ip}" for h in lab.hosts]


def test_ssh_fails_with_a_wrong_known_hosts(lab: Lab, tmp_path: Path) -> None:
    lines = lab.known_hosts_path.read_text().splitlines()
    keys = [line.split(maxsplit=1)[1] for line in lines]
    # lab1 and lab2 with each other's host key: a man in the middle, as far as ssh can tell
    wrong = tmp_path / "known_hosts"
    wrong.write_text(f"lab1,198.51.100.11 {keys[1]}\nlab2,198.51.100.12 {keys[0]}\n")
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    for known, message in ((wrong, "IDENTIFICATION HAS CHANGED"), (empty, "No ED25519 host key")):
        r = ssh(lab, "lab1", "true", "-o", f"UserKnownHostsFile={known}")
        assert r.returncode == 255
        assert message in r.stderr
        assert "Host key verification failed" in r.stderr


def test_each_host_sees_only_its_own_processes_and_hostname(lab: Lab) -> None:
    markers = {}
    for h in lab.hosts:
        # A process only this host runs: `sleep 3600.<index>` (killed with the host at teardown).
        markers[h.name] = f"3600.{h.index}"
        lab.exec(h.name, ["sh", "-c", f"sleep {markers[h.name]} >/dev/null 2>&1 &"])
    for h in lab.hosts:
        ps = lab.exec(h.name, ["ps", "-eo", "pid=,args="]).stdout
        first = ps.splitlines()[0].split(maxsplit=1)
        assert first == ["1", f"/bin/sh {lab.dir}/hosts/init.sh {h.name} {lab.dir}/hosts/{h.name}"]
        assert f"sleep {markers[h.name]}" in ps
        others = [m for n, m in markers.items() if n != h.name]
        assert not [m for m in others if m in ps], ps
        assert len(re.findall(r"sshd: .*\[listener\]", ps)) == 1
        assert lab.exec(h.name, ["hostname"]).stdout.strip() == h.name
        assert lab.exec(h.name, ["cat", "/etc/hostname"]).stdout.strip() == h.name
        assert lab.exec(h.name, ["cat", "/proc/sys/kernel/hostname"]).stdout.strip() == h.name
    assert Path("/proc/sys/kernel/hostname").read_text().strip() != "lab1"


def test_private_directories_stay_in_their_host(lab: Lab) -> None:
    token = f"wiremesh-lab-test-{time.time_ns()}"
    writes = [
        f"echo {token} > /etc/wireguard/{token}",
        f"echo '10.77.0.99 {token}' >> /etc/hosts",
        f"mkdir -p /var/lib/{token} && echo {token} > /var/lib/{token}/state",
        f"echo {token} > /tmp/{token}",
        f"echo {token} > /root/{token}",
        f"echo {token} > /run/{token}",
    ]
    lab.exec("lab1", ["sh", "-ec", "; ".join(writes)])
    found_in_lab1 = lab.exec("lab1", ["sh", "-c", f"grep -rl {token} /etc/hosts /etc/wireguard"])
    assert found_in_lab1.stdout.split() == ["/etc/hosts", f"/etc/wireguard/{token}"]
    for place in ("/etc/wireguard", "/etc/hosts", "/var/lib", "/tmp", "/root", "/run"):
        other = lab.exec("lab2", ["grep", "-rl", token, place], check=False)
        assert other.stdout == "", f"lab2 sees lab1's {place}"
    # ... and none of it reached this machine's own files
    assert token not in Path("/etc/hosts").read_text()
    for place in ("/etc/wireguard", "/var/lib", "/root", "/run"):
        assert not (Path(place) / token).exists()
    machine_tmp = subprocess.run(
        ["grep", "-rls", token, "/etc/wireguard", "/var/lib"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert machine_tmp.stdout == ""


def test_underlay_reaches_only_the_lab(lab: Lab) -> None:
    r = lab.exec("lab1", ["ping", "-c", "1", "-W", "2", "198.51.100.13"])
    assert "1 received" in r.stdout
    routes = lab.exec("lab1", ["ip", "-4", "route", "show", "table", "all"]).stdout
    assert "default" not in routes
    off_lab = lab.exec("lab1", ["ip", "route", "get", "192.0.2.1"], check=False)
    assert off_lab.returncode != 0
    assert "unreachable" in off_lab.stderr


def _wg_up(lab: Lab, host: str, address: str) -> str:
    """wireguard-go wg0 configured by hand over ssh, as a person would; returns the public key."""
    script = f"""set -e
umask 077
wg genkey > /etc/wireguard/wg0.key
wireguard-go wg0 2>/dev/null
wg set wg0 private-key /etc/wireguard/wg0.key listen-port 51820
ip address add {address}/24 dev wg0
ip link set wg0 up
wg pubkey < /etc/wireguard/wg0.key
"""
    r = ssh(lab, host, script)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_wireguard_go_in_two_hosts_pings_over_the_tunnel(lab: Lab) -> None:
    try:
        pub1 = _wg_up(lab, "lab1", "10.77.0.1")
        pub2 = _wg_up(lab, "lab2", "10.77.0.2")
        # Both run an interface called wg0, each with its own control socket in its own /run.
        for host in ("lab1", "lab2"):
            socks = lab.exec(host, ["ls", "/run/wireguard"]).stdout.split()
            assert socks == ["wg0.sock"]
        for host, peer, endpoint, allowed in (
            ("lab1", pub2, "198.51.100.12:51820", "10.77.0.2/32"),
            ("lab2", pub1, "198.51.100.11:51820", "10.77.0.1/32"),
        ):
            r = ssh(lab, host, f"wg set wg0 peer {peer} endpoint {endpoint} allowed-ips {allowed}")
            assert r.returncode == 0, r.stderr
        # The ssh sessions that started wireguard-go have ended; the daemons must still run.
        r = ssh(lab, "lab1", "ping -c 3 -i 0.2 -W 2 10.77.0.2")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "3 received" in r.stdout
        r = ssh(lab, "lab2", "ping -c 1 -W 2 10.77.0.1 && wg show wg0 latest-handshakes")
        assert r.returncode == 0, r.stdout + r.stderr
        handshake = r.stdout.splitlines()[-1].split()
        assert handshake[0] == pub1 and int(handshake[1]) > 0
        # lab3 has no wg0 at all: the interfaces are per host
        assert lab.exec("lab3", ["ip", "link", "show", "wg0"], check=False).returncode != 0
    finally:
        for host in ("lab1", "lab2"):
            lab.exec(host, ["ip", "link", "del", "wg0"], check=False)


def test_sshd_stops_and_starts_while_the_host_runs(lab: Lab) -> None:
    lab.exec("lab3", ["sh", "-c", "wireguard-go wg9 2>/dev/null"])
    wg_pid = lab.exec("lab3", ["pgrep", "-x", "wireguard-go"]).stdout.strip()
    init = lab.host("lab3").pid
    try:
        lab.stop_sshd("lab3")
        assert lab.sshd_pid("lab3") is None
        refused = ssh(lab, "lab3", "true")
        assert refused.returncode == 255
        assert "Connection refused" in refused.stderr
        lab.start_sshd("lab3")
        assert lab.sshd_pid("lab3") is not None
        assert ssh(lab, "lab3", "true").returncode == 0
        assert lab.exec("lab3", ["pgrep", "-x", "wireguard-go"]).stdout.strip() == wg_pid
        assert lab.host("lab3").pid == init
        # PID 1 reaped the stopped sshd: no zombie in the host
        states = lab.exec("lab3", ["ps", "-eo", "stat="]).stdout.split()
        assert not [s for s in states if s.startswith("Z")]
    finally:
        lab.start_sshd("lab3")
        lab.exec("lab3", ["ip", "link", "del", "wg9"], check=False)


def test_exec_reports_failures_and_timeouts(lab: Lab) -> None:
    with pytest.raises(LabCommandError) as failed:
        lab.exec("lab1", ["sh", "-c", "echo oops >&2; exit 3"])
    assert failed.value.returncode == 3
    assert failed.value.host == "lab1"
    assert "oops" in failed.value.stderr
    with pytest.raises(LabCommandError, match="timed out"):
        lab.exec("lab1", ["sleep", "30"], timeout=0.5)
    left = lab.exec("lab1", ["pgrep", "-x", "sleep", "-a"], check=False).stdout
    assert "sleep 30" not in left
    assert lab.exec("lab1", ["cat"], input="hello").stdout == "hello"
    assert lab.exec("lab1", ["pwd"]).stdout.strip() == "/root"
