"""Broken hosts and concurrent runs (issue 10, items 3, 4, 5, 11, 12) on real lab hosts.

One 4-host lab for the module, converged first; each test leaves it converged again.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Result, cli
from tests.integration.conftest import LAB_WAIT
from wiremesh.lab import Lab

pytestmark = pytest.mark.root

HOSTS = ("lab1", "lab2", "lab3", "lab4")


def wm(lab: Lab, *args: str) -> Result:
    return cli("-f", str(lab.inventory_path), *args)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    directory = tmp_path_factory.mktemp("hardening") / "lab"
    made = Lab.up(directory, 4, wait=LAB_WAIT)
    try:
        r = wm(made, "apply", "--yes")
        assert r.code == 0, r.out + r.err
        yield made
    finally:
        made.down()


def plan_json(lab: Lab, *args: str) -> dict[str, object]:
    r = wm(lab, "plan", "--json", *args)
    assert r.code == 0, r.out + r.err
    data: dict[str, object] = json.loads(r.out)
    return data


def host_files_are_whole(lab: Lab, host: str) -> None:
    """No empty, partial or temporary file where a config, key or copy is; the config loads."""
    listing = lab.exec(
        host,
        ["sh", "-c", 'for f in /etc/wireguard/* /etc/hosts; do echo "$(stat -c %s "$f") $f"; done'],
    ).stdout
    for line in listing.splitlines():
        size, path = line.split(" ", 1)
        assert int(size) > 0, f"{host}: {path} is empty"
        assert "wiremesh-new" not in path and "wiremesh-prev" not in path, f"{host}: left {path}"
    lab.exec(host, ["wg-quick", "strip", "wg0"])  # parses
    key = lab.exec(host, ["stat", "-c", "%a", "/etc/wireguard/wg0.key"]).stdout.strip()
    assert key == "600", f"{host}: key file mode {key}"


def test_concurrent_applies_serialise_on_each_host(lab: Lab) -> None:
    """Item 3: six applies at once, ten times: each converges or fails with the lock message."""
    wiremesh = [sys.executable, "-m", "wiremesh", "-f", str(lab.inventory_path)]
    outcomes: dict[str, int] = {"converged": 0, "lock": 0}
    for round_ in range(10):
        value = ["--allowed-ip", "172.16.3.0/24"] if round_ % 2 == 0 else ["--clear", "allowed_ips"]
        assert wm(lab, "node", "set", "lab3", *value).code == 0
        runs = [
            subprocess.Popen(
                [*wiremesh, "apply", "--yes", *(["--lock-timeout", "0"] if i >= 3 else [])],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(6)
        ]
        for run in runs:
            out, err = run.communicate(timeout=300)
            text = " ".join((out + err).split())
            if run.returncode == 0:
                outcomes["converged"] += 1
            else:
                assert run.returncode == 1, text
                assert (
                    "another wiremesh run is changing" in text and "held by wiremesh apply" in text
                ), text
                outcomes["lock"] += 1
        for host in HOSTS:
            host_files_are_whole(lab, host)
        assert plan_json(lab)["up_to_date"], round_
    print(f"60 concurrent applies: {outcomes}")
    assert outcomes["converged"] >= 30  # the three that wait always get their turn
    assert outcomes["converged"] + outcomes["lock"] == 60


def test_a_second_mesh_does_not_take_over_the_interface(lab: Lab, tmp_path: Path) -> None:
    """Item 4: another inventory on the same host and interface is refused, naming the owner."""
    other = tmp_path / "other.toml"
    ssh_config = str(lab.ssh_config_path)
    assert cli("-f", str(other), "init", "--cidr", "10.99.0.0/24", "--name", "other").code == 0
    assert cli("-f", str(other), "node", "add", "lab1", "--ssh", "root@lab1").code == 0
    before = lab.exec("lab1", ["sha256sum", "/etc/wireguard/wg0.conf"]).stdout
    # the lab's ssh_config, given on the command line (an operator's own choice: trusted)
    r = cli("-f", str(other), "--ssh-config", ssh_config, "plan", "--json", "lab1")
    assert r.code == 0, r.err
    host = json.loads(r.out)["hosts"][0]
    mine = json.loads(wm(lab, "node", "ls", "--json").out)["mesh"]["name"]
    assert any(f"belongs to mesh '{mine}'" in c for c in host["conflicts"]), host
    r = cli("-f", str(other), "--ssh-config", ssh_config, "apply", "--yes")
    assert r.code == 2, r.out + r.err
    assert f"belongs to mesh '{mine}'" in " ".join(r.err.split())
    assert lab.exec("lab1", ["sha256sum", "/etc/wireguard/wg0.conf"]).stdout == before
    assert plan_json(lab)["up_to_date"]


def test_a_lost_key_file_is_recovered_from_the_running_interface(lab: Lab) -> None:
    """Item 5: wg0.key and wg0.conf deleted while the interface runs."""
    key = lab.exec("lab2", ["wg", "show", "wg0", "public-key"]).stdout.strip()
    lab.exec("lab2", ["rm", "/etc/wireguard/wg0.key", "/etc/wireguard/wg0.conf"])
    plan = plan_json(lab, "lab2")
    described = [c["description"] for c in plan["hosts"][0]["changes"]]  # type: ignore[index]
    assert described[0].startswith("recover the key file from the running interface"), described
    r = wm(lab, "apply", "--yes")
    assert r.code == 0, r.out + r.err
    assert (
        lab.exec("lab2", ["sh", "-c", "wg pubkey < /etc/wireguard/wg0.key"]).stdout.strip() == key
    )
    host_files_are_whole(lab, "lab2")
    assert plan_json(lab)["up_to_date"]


def _links(lab: Lab) -> dict[tuple[str, str], dict[str, object]]:
    report = json.loads(wm(lab, "status", "--json").out)
    return {(n["name"], p["name"]): p for n in report["nodes"] for p in n["peers"]}


def test_idle_links_are_healthy_and_a_dead_interface_is_down_at_once(lab: Lab) -> None:
    """Items 10 and 11."""
    r = wm(lab, "status", "--json")
    report = json.loads(r.out)
    assert r.code == 0 and report["healthy"], report["links"]
    assert report["links"]["down"] == 0
    pid = lab.exec("lab3", ["pgrep", "-f", "wireguard-go wg0"]).stdout.split()[0]
    lab.exec("lab3", ["kill", pid])  # the wireguard-go this lab host runs, by its PID
    for _ in range(50):
        if lab.exec("lab3", ["ip", "link", "show", "wg0"], check=False).returncode != 0:
            break
        time.sleep(0.1)
    links = _links(lab)
    for host in ("lab1", "lab2", "lab4"):
        assert links[(host, "lab3")]["link"] == "down", links[(host, "lab3")]
        assert links[(host, "lab3")]["reason"] == "lab3's interface is down"
    assert wm(lab, "status").code == 1
    r = wm(lab, "apply", "--yes")
    assert r.code == 0, r.out + r.err
    assert wm(lab, "status", "--ping").code == 0


def test_a_wrong_endpoint_port_is_told_not_fought(lab: Lab) -> None:
    """Item 12: lab4's endpoint says port 51899, lab4 listens on 51820; lab4 talks first, so the
    others roam to its real port and the link works."""
    assert wm(lab, "node", "set", "lab4", "--endpoint", "198.51.100.14:51899").code == 0
    assert wm(lab, "apply", "--yes").code == 0
    addresses = {
        n["name"]: n["address"] for n in json.loads(wm(lab, "node", "ls", "--json").out)["nodes"]
    }
    for host in ("lab1", "lab2", "lab3"):
        lab.exec("lab4", ["ping", "-c", "2", "-W", "3", addresses[host]])
    links = _links(lab)
    link = links[("lab1", "lab4")]
    assert link["link"] == "direct" and link["endpoint_mismatch"] is True, link
    assert link["endpoint_configured"] == "198.51.100.14:51899"
    assert link["endpoint"] == "198.51.100.14:51820"
    assert "check lab4's endpoint and listen port" in str(link["note"])
    plan = plan_json(lab, "lab1")
    host = plan["hosts"][0]  # type: ignore[index]
    assert host["changes"] == [], host
    assert any(
        "its configured endpoint 198.51.100.14:51899 is not the one in use" in n
        for n in host["notes"]
    )
    assert wm(lab, "node", "set", "lab4", "--endpoint", "198.51.100.14").code == 0
    assert wm(lab, "apply", "--yes").code == 0
    assert plan_json(lab)["up_to_date"]
