"""NAT routers: a network namespace that masquerades its LAN onto the public bridge.

Everything a router needs lives in its own namespace and dies with it (``ip netns del``): its links and
addresses, ``net.ipv4.ip_forward`` (a per-namespace sysctl) and its packet filter rules and conntrack
table (netfilter state is per namespace too). Nothing here touches the root namespace's rules.

The router behaves like a home router:

* LAN hosts reach the public bridge through it, masqueraded to its public address (port preserved
  where it can be, as Linux's MASQUERADE does);
* nothing from outside reaches the LAN unless it answers a connection the LAN opened (stateful filter),
  except one TCP port per LAN host forwarded to that host's sshd, for the operator;
* no hairpin NAT: a LAN host that sends to the router's public address reaches the router itself, never
  another LAN host, so two hosts behind one router cannot find each other through it;
* unsolicited packets to the router itself are dropped (not answered), so they leave no conntrack
  entry behind that would change the router's port mapping (see :func:`router_rules`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from wiremesh.errors import OperationError
from wiremesh.lab import network
from wiremesh.lab.prereq import find_program
from wiremesh.lab.topology import RouterPlan

WAN = "wan"
LAN = "lan"

RESTORE_PROGRAMS = ("iptables-restore", "iptables-nft-restore", "iptables-legacy-restore")
"""Tried in this order: the system's default backend first, then each explicit one (the kernel may
lack nf_tables, or the legacy x_tables modules)."""


def router_rules(router: RouterPlan) -> str:
    """The router's packet filter as ``iptables-restore`` input (nat and filter tables)."""
    lines = [
        "*nat",
        ":PREROUTING ACCEPT [0:0]",
        ":INPUT ACCEPT [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        ":POSTROUTING ACCEPT [0:0]",
    ]
    # -i wan: only what arrives from outside is forwarded; from the LAN the same address:port is the
    # router itself (no hairpin).
    lines += [
        f"-A PREROUTING -i {WAN} -d {router.wan.ip}/32 -p tcp -m tcp --dport {f.port}"
        f" -j DNAT --to-destination {f.to}:22"
        for f in router.forwards
    ]
    lines += [f"-A POSTROUTING -s {router.network} -o {WAN} -j MASQUERADE", "COMMIT"]
    lines += [
        "*filter",
        ":INPUT ACCEPT [0:0]",
        ":FORWARD DROP [0:0]",
        ":OUTPUT ACCEPT [0:0]",
        # Like a home router, drop what comes from outside for the router itself unless it answers
        # the router. Accepting it (to answer with ICMP port unreachable) would also confirm a
        # conntrack entry for it, and then MASQUERADE must pick another source port for a LAN host
        # that later sends to that peer: the hole a peer punched toward port P is then useless.
        f"-A INPUT -i {WAN} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        f"-A INPUT -i {WAN} -j DROP",
        f"-A FORWARD -i {LAN} -o {WAN} -j ACCEPT",
        f"-A FORWARD -i {WAN} -o {LAN} -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
        # The ssh port forwards above, and nothing else from outside.
        f"-A FORWARD -i {WAN} -o {LAN} -p tcp -m conntrack --ctstate DNAT -j ACCEPT",
        "COMMIT",
    ]
    return "\n".join(lines) + "\n"


def router_sysctls() -> dict[str, str]:
    """Per-namespace sysctls of a router (they vanish with its namespace)."""
    return {"net.ipv4.ip_forward": "1"}


def netns_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """Run ``argv`` in network namespace ``netns`` (``ip netns exec``: also /sys of that namespace)."""
    return ["ip", "netns", "exec", netns, *argv]


def _run(
    netns: str, argv: Sequence[str], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        netns_argv(netns, argv),
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def setup_router(router: RouterPlan, batch: Sequence[str]) -> None:
    """Configure the router's namespace: addresses (``batch``), forwarding, its packet filter."""
    network.run_batch(batch, netns=router.netns)
    for key, value in router_sysctls().items():
        proc = _run(router.netns, ["sysctl", "-q", "-w", f"{key}={value}"])
        if proc.returncode != 0:
            raise OperationError(
                f"cannot set {key} in NAT router {router.name}: {proc.stderr.strip()}",
                hint="check `sysctl` (package procps)",
            )
    load_rules(router)


def load_rules(router: RouterPlan) -> str:
    """Load :func:`router_rules` with the first ``iptables-restore`` that works; returns its name."""
    rules = router_rules(router)
    tried = []
    for program in RESTORE_PROGRAMS:
        path = find_program(program)
        if path is None:
            tried.append(f"{program}: not installed")
            continue
        proc = _run(router.netns, [path, "-w", "5"], stdin=rules)
        if proc.returncode == 0:
            return program
        tried.append(f"{program}: {proc.stderr.strip() or f'exit {proc.returncode}'}")
    raise OperationError(
        f"cannot load the NAT rules of router {router.name}; tried " + "; ".join(tried),
        hint="install iptables (apt-get install iptables) and check that the kernel has NAT "
        "(nf_nat, nf_conntrack): `modprobe nf_nat`",
    )
