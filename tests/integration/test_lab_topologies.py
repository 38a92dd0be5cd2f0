"""Issue 5's lab topologies on real namespaces: sites, NAT, IPv6, underlay MTU.

Each test makes its own small lab (``lab_factory``) and checks the network from inside the hosts, with the
tools every lab host has (ping, ip, wg, wireguard-go, bash's /dev/tcp).
"""

from __future__ import annotations

import asyncio
import json
import subprocess

import pytest

from tests.helpers import cli
from tests.integration.conftest import LabFactory
from wiremesh.lab import Lab
from wiremesh.model.endpoint import SshTarget
from wiremesh.remote.ssh import SshOptions, connect
from wiremesh.store.inventory_file import InventoryFile

pytestmark = pytest.mark.root


def sh(lab: Lab, host: str, script: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``sh -c script`` in ``host``, whatever its exit code."""
    return lab.exec(host, ["sh", "-c", script], check=False, timeout=timeout)


def pings(lab: Lab, host: str, target: str, *args: str, wait: float = 2) -> bool:
    """True if one ping from ``host`` to ``target`` is answered within ``wait`` seconds."""
    r = lab.exec(host, ["ping", "-c", "1", "-W", f"{wait:g}", *args, target], check=False)
    return r.returncode == 0


def no_answer(lab: Lab, host: str, target: str, *args: str) -> bool:
    """True if a ping from ``host`` to ``target`` gets no answer (1 s is plenty on a lab bridge)."""
    return not pings(lab, host, target, *args, wait=1)


def ssh(lab: Lab, host: str, command: str) -> subprocess.CompletedProcess[str]:
    """The real OpenSSH client with the lab's ssh_config (strict host keys, no prompts)."""
    return subprocess.run(
        ["ssh", "-F", str(lab.ssh_config_path), "-o", "BatchMode=yes", host, command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def root_ruleset() -> str:
    """The root namespace's nftables ruleset (iptables-nft rules included)."""
    return subprocess.run(
        ["nft", "list", "ruleset"], capture_output=True, text=True, check=False
    ).stdout


def test_sites_have_private_links_between_their_own_hosts_only(lab_factory: LabFactory) -> None:
    lab = lab_factory(0, sites={"a": 2, "b": 2})
    assert [(h.name, h.role, h.group) for h in lab.hosts] == [
        ("lab1", "site", "a"),
        ("lab2", "site", "a"),
        ("lab3", "site", "b"),
        ("lab4", "site", "b"),
    ]
    private = {h.name: str(h.private_ip) for h in lab.hosts}
    assert private == {
        "lab1": "203.0.113.11",
        "lab2": "203.0.113.12",
        "lab3": "203.0.113.75",
        "lab4": "203.0.113.76",
    }
    for h in lab.hosts:
        eth1 = lab.exec(h.name, ["ip", "-4", "-o", "addr", "show", "dev", "eth1"]).stdout
        assert f"inet {h.private_ip}/26 " in eth1
        assert pings(lab, h.name, "198.51.100.1")  # on the public bridge like any public host
    # Same site: the private link works; the other site's private addresses are out of reach.
    for source, same, other in (("lab1", "lab2", "lab3"), ("lab4", "lab3", "lab2")):
        assert pings(lab, source, private[same])
        assert no_answer(lab, source, private[other])
        route = lab.exec(source, ["ip", "route", "get", private[other]], check=False)
        assert route.returncode != 0 and "unreachable" in route.stderr
    # ... even with a route via a host of the other site on the public bridge: hosts do not forward
    # (lab3 would answer for its own address, as a real host does: the weak host model).
    sh(lab, "lab1", "ip route add 203.0.113.64/26 via 198.51.100.13")
    assert no_answer(lab, "lab1", private["lab4"])
    # The private bridges are pure L2: the root namespace has no address and no route there.
    for site in lab.sites:
        addrs = json.loads(
            subprocess.run(
                ["ip", "-j", "addr", "show", "dev", site.bridge],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        assert addrs[0]["addr_info"] == [], addrs
    routes = subprocess.run(
        ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True, check=True
    ).stdout
    assert "203.0.113." not in routes
    inventory = InventoryFile(lab.inventory_path).load()
    assert [(n.name, n.site, str(n.private_endpoint)) for n in inventory] == [
        ("lab1", "a", "203.0.113.11"),
        ("lab2", "a", "203.0.113.12"),
        ("lab3", "b", "203.0.113.75"),
        ("lab4", "b", "203.0.113.76"),
    ]
    listed = json.loads(cli("lab", "ls", "--dir", lab.dir, "--json").out)["hosts"]
    assert [(h["role"], h["group"], h["private_ip"]) for h in listed][:1] == [
        ("site", "a", "203.0.113.11")
    ]


WG_UP = """set -e
umask 077
wg genkey > /etc/wireguard/t.key
wireguard-go wgt 2>/dev/null
wg set wgt private-key /etc/wireguard/t.key listen-port 51820
ip address add {address}/24 dev wgt
ip link set wgt up
wg pubkey < /etc/wireguard/t.key
"""


def _handshakes(lab: Lab, host: str) -> int:
    out = lab.exec(host, ["wg", "show", "wgt", "latest-handshakes"]).stdout.split()
    return int(out[1]) if len(out) > 1 else 0


def test_nat_hosts_get_out_but_nothing_gets_in(lab_factory: LabFactory) -> None:
    before = root_ruleset()
    lab = lab_factory(1, nats={"home": 2})
    router = lab.router("home")
    assert (str(router.wan_ip), str(router.lan)) == ("198.51.100.201", "192.0.2.65/26")
    nat2, nat3 = lab.host("lab2"), lab.host("lab3")
    assert (nat2.role, str(nat2.private_ip), str(nat2.nat_ip), nat2.public_ip) == (
        "nat",
        "192.0.2.75",
        "198.51.100.201",
        None,
    )
    # Out through the router; back only as answers. The LAN is out of reach from the public side,
    # even for a public host that routes it via the router (its filter drops what nobody asked for).
    assert pings(lab, "lab2", "198.51.100.11")
    assert pings(lab, "lab2", "192.0.2.76")  # its LAN neighbour, directly
    assert no_answer(lab, "lab1", "192.0.2.75")
    sh(lab, "lab1", "ip route add 192.0.2.64/26 via 198.51.100.201")
    assert no_answer(lab, "lab1", "192.0.2.75")
    sh(lab, "lab1", "ip route del 192.0.2.64/26")

    # ssh: strict host keys through the router's port forward, with OpenSSH and with asyncssh.
    known = lab.known_hosts_path.read_text()
    assert f"[lab2]:2212,[198.51.100.201]:2212 {known_key(known, 'lab2')}" in known
    for h in (nat2, nat3):
        assert (str(h.ssh_address), h.ssh_port) == ("198.51.100.201", 2210 + h.index)
        r = ssh(lab, h.name, "hostname")
        assert (r.returncode, r.stdout.strip()) == (0, h.name), r.stderr
    assert asyncio.run(_asyncssh_hostname(lab, "lab3")) == "lab3"
    # No hairpin: from the LAN, lab3's forwarded port is the router itself, which refuses it.
    probe = "timeout 3 bash -c 'exec 3<>/dev/tcp/198.51.100.201/2213' && echo open || echo closed"
    assert sh(lab, "lab2", probe).stdout.strip() == "closed"
    assert sh(lab, "lab1", probe).stdout.strip() == "open"

    # UDP: the public host cannot start a WireGuard session toward a NAT host, neither at its LAN
    # address nor at the router's; once the NAT host starts one, the public host sees the router.
    keys = {
        h: sh(lab, h, WG_UP.format(address=a)).stdout.strip()
        for h, a in (("lab1", "10.99.0.1"), ("lab2", "10.99.0.2"))
    }
    sh(lab, "lab2", f"wg set wgt peer {keys['lab1']} allowed-ips 10.99.0.1/32")
    for guess in ("192.0.2.75:51820", "198.51.100.201:51820"):
        sh(lab, "lab1", f"wg set wgt peer {keys['lab2']} endpoint {guess} allowed-ips 10.99.0.2/32")
        assert no_answer(lab, "lab1", "10.99.0.2", "-w", "2")
        assert _handshakes(lab, "lab1") == 0 and _handshakes(lab, "lab2") == 0
    sh(lab, "lab1", f"wg set wgt peer {keys['lab2']} remove")
    sh(lab, "lab1", f"wg set wgt peer {keys['lab2']} allowed-ips 10.99.0.2/32")  # no endpoint
    sh(lab, "lab2", f"wg set wgt peer {keys['lab1']} endpoint 198.51.100.11:51820")
    assert pings(lab, "lab2", "10.99.0.1", "-w", "5")
    seen = lab.exec("lab1", ["wg", "show", "wgt", "endpoints"]).stdout.split()
    assert seen[0] == keys["lab2"] and seen[1].startswith("198.51.100.201:"), seen
    assert pings(lab, "lab1", "10.99.0.2")  # now an answer to what lab2 opened

    inventory = InventoryFile(lab.inventory_path).load()
    assert inventory.mesh.relay == "lab1"
    assert [(n.name, n.endpoint, n.site, n.private_endpoint) for n in inventory][1:] == [
        ("lab2", None, None, None),
        ("lab3", None, None, None),
    ]
    assert "192.0.2." not in lab.inventory_path.read_text()
    # The router's rules live in its namespace; the root's are as they were (and so are the root's
    # forwarding sysctls: assert_lab_gone checks them for every lab).
    assert root_ruleset() == before


def known_key(known: str, alias: str) -> str:
    """The key of ``alias`` in known_hosts text."""
    for line in known.splitlines():
        if line.startswith(f"[{alias}]:"):
            return " ".join(line.split()[1:3])
    raise AssertionError(f"{alias} is not in known_hosts")


async def _asyncssh_hostname(lab: Lab, host: str) -> str:
    session = await connect(host, SshTarget(host, "root"), SshOptions(config=lab.ssh_config_path))
    try:
        return (await session.run("hostname", step="hostname")).stdout.strip()
    finally:
        session.close()


def test_ipv6_underlay(lab_factory: LabFactory) -> None:
    lab = lab_factory(2, sites={"a": 1}, ipv6=True)
    addresses = {h.name: str(h.underlay6) for h in lab.hosts}
    assert addresses == {"lab1": "2001:db8::11", "lab2": "2001:db8::12", "lab3": "2001:db8::13"}
    for source in lab.hosts:
        for target in lab.hosts:
            if source.name != target.name:
                assert pings(lab, source.name, addresses[target.name], "-6"), (source, target)
        assert pings(lab, source.name, "2001:db8::1", "-6")  # the root namespace
    # sshd listens on the IPv6 address too.
    listening = sh(lab, "lab1", "ss -ltnH").stdout
    assert "[2001:db8::11]:22" in listening
    inventory = InventoryFile(lab.inventory_path).load()
    assert str(inventory.mesh.cidr6) == "fd77::/64"
    assert [str(n.endpoint) for n in inventory] == [
        "[2001:db8::11]:51820",
        "[2001:db8::12]:51820",
        "[2001:db8::13]:51820",
    ]


def test_underlay_mtu_drops_bigger_frames(lab_factory: LabFactory) -> None:
    lab = lab_factory(3, underlay_mtu={"lab2": 1280, None: 1400})
    assert [h.mtu for h in lab.hosts] == [1400, 1280, 1400]
    for link in ("wm-lab2-eth0",):
        shown = subprocess.run(
            ["ip", "link", "show", link], capture_output=True, text=True, check=True
        )
        assert " mtu 1280 " in shown.stdout
    assert " mtu 1280 " in lab.exec("lab2", ["ip", "link", "show", "eth0"]).stdout
    # 1252 bytes of ICMP payload + 8 (ICMP) + 20 (IP) = 1280: fits; one more byte does not, both
    # from lab2 and toward it, and DF forbids fragmenting (-M do).
    assert pings(lab, "lab1", "198.51.100.12", "-M", "do", "-s", "1252")
    assert no_answer(lab, "lab1", "198.51.100.12", "-M", "do", "-s", "1253")
    assert pings(lab, "lab3", "198.51.100.12", "-M", "do", "-s", "1252")
    assert no_answer(lab, "lab2", "198.51.100.11", "-M", "do", "-s", "1253")
    # Between the two 1400-byte hosts, 1372 fits and 1373 does not.
    assert pings(lab, "lab1", "198.51.100.13", "-M", "do", "-s", "1372")
    assert no_answer(lab, "lab1", "198.51.100.13", "-M", "do", "-s", "1373")
    listed = json.loads(cli("lab", "ls", "--dir", lab.dir, "--json").out)["hosts"]
    assert [h["mtu"] for h in listed] == [1400, 1280, 1400]
