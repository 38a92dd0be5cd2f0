"""The lab's underlay as data: bridges, namespaces and veth ports, and the ``ip`` commands that make them.

The network is described first (:class:`Network`, pure and unit-tested), then created with two kinds of
``ip -batch`` runs: one in the root namespace for bridges, namespaces and veths, and one inside each host
for its addresses, link state and routes. Later topologies (per-site bridges, NAT routers, IPv6, a per-host
MTU) are more bridges, more ports, more addresses and routes in the same data, not new code paths.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface
from pathlib import Path

from wiremesh.errors import OperationError
from wiremesh.lab import layout

IPInterface = IPv4Interface | IPv6Interface

NETNS_DIR = Path("/run/netns")
"""Where ``ip netns add`` bind-mounts named network namespaces (ip-netns(8))."""


@dataclass(frozen=True)
class Bridge:
    """A bridge in the root namespace. ``addresses`` are the root namespace's own on it (may be none)."""

    name: str
    addresses: tuple[IPInterface, ...] = ()
    mtu: int | None = None


@dataclass(frozen=True)
class Port:
    """A veth pair: ``ifname`` inside a namespace, ``peer`` in the root namespace on ``bridge``."""

    ifname: str
    peer: str
    bridge: str
    addresses: tuple[IPInterface, ...] = ()
    mtu: int | None = None


@dataclass(frozen=True)
class Route:
    """A route inside a namespace, e.g. ``Route("default", via="192.0.2.1")`` for a NATed host."""

    destination: str
    via: str | None = None
    dev: str | None = None


@dataclass(frozen=True)
class Namespace:
    """A named network namespace with its ports and routes (a lab host, or later a NAT router)."""

    name: str
    ports: tuple[Port, ...]
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True)
class Network:
    """Everything the underlay consists of."""

    bridges: tuple[Bridge, ...]
    namespaces: tuple[Namespace, ...] = field(default=())

    @property
    def links(self) -> list[str]:
        """Names of every root-namespace link (bridges and veth ends)."""
        return [b.name for b in self.bridges] + self.veths

    @property
    def veths(self) -> list[str]:
        """Root-side names of every veth pair."""
        return [p.peer for ns in self.namespaces for p in ns.ports]

    def namespace(self, name: str) -> Namespace:
        """The namespace called ``name``."""
        for ns in self.namespaces:
            if ns.name == name:
                return ns
        raise KeyError(name)

    def root_batch(self) -> list[str]:
        """``ip -batch`` lines for the root namespace: bridges, namespaces and veth pairs, in order."""
        lines: list[str] = []
        for b in self.bridges:
            # Bridged lab traffic must not go through the machine's own iptables (br_netfilter is loaded
            # here with bridge-nf-call-iptables=1; a FORWARD DROP policy, e.g. Docker's, would cut the lab).
            lines.append(
                f"link add {b.name}{_mtu(b.mtu)} type bridge"
                " nf_call_iptables 0 nf_call_ip6tables 0 nf_call_arptables 0"
            )
            lines.extend(f"addr add {a.with_prefixlen} dev {b.name}" for a in b.addresses)
            lines.append(f"link set {b.name} up")
        for ns in self.namespaces:
            lines.append(f"netns add {ns.name}")
            for p in ns.ports:
                mtu = _mtu(p.mtu)
                lines.append(
                    f"link add {p.peer}{mtu} type veth peer name {p.ifname}{mtu} netns {ns.name}"
                )
                lines.append(f"link set {p.peer} master {p.bridge} up")
        return lines

    def namespace_batch(self, name: str) -> list[str]:
        """``ip -batch`` lines to run inside namespace ``name``: loopback, addresses, links up, routes."""
        ns = self.namespace(name)
        lines = ["link set lo up"]
        for p in ns.ports:
            # nodad: an address must be usable at once, since sshd binds to it right after (RFC 4862
            # duplicate address detection would keep an IPv6 address "tentative" for a second or more).
            lines.extend(
                f"addr add {a.with_prefixlen} dev {p.ifname}"
                + (" nodad" if isinstance(a, IPv6Interface) else "")
                for a in p.addresses
            )
            lines.append(f"link set {p.ifname} up")
        for r in ns.routes:
            line = f"route add {r.destination}"
            if r.via:
                line += f" via {r.via}"
            if r.dev:
                line += f" dev {r.dev}"
            lines.append(line)
        return lines


def _mtu(mtu: int | None) -> str:
    return f" mtu {mtu}" if mtu is not None else ""


def flat_network(hosts: Sequence[layout.HostAddress]) -> Network:
    """Issue 3's underlay: every host on the public bridge, no routes beyond 198.51.100.0/24."""
    bridge = Bridge(layout.PUBLIC_BRIDGE, addresses=(layout.UNDERLAY_GATEWAY,))
    namespaces = tuple(
        Namespace(
            name=h.netns,
            ports=(
                Port(
                    ifname="eth0",
                    peer=layout.veth_name(h.name, "eth0"),
                    bridge=bridge.name,
                    addresses=(h.underlay,),
                ),
            ),
        )
        for h in hosts
    )
    return Network(bridges=(bridge,), namespaces=namespaces)


# --- running ip -------------------------------------------------------------------------------------


def run_batch(lines: Iterable[str], netns: str | None = None, *, force: bool = False) -> None:
    """Run ``ip -batch -`` (in ``netns`` if given). ``force`` goes on after a failing line."""
    argv = ["ip"]
    if netns:
        argv += ["-n", netns]
    if force:
        argv.append("-force")
    argv += ["-batch", "-"]
    text = "".join(f"{line}\n" for line in lines)
    proc = subprocess.run(argv, input=text, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        where = f" in {netns}" if netns else ""
        raise OperationError(
            f"ip failed{where}: {proc.stderr.strip() or proc.stdout.strip()}",
            hint="check `ip link` and `ip netns list`; then run `wiremesh lab down` to clean up",
        )


def existing_links(prefix: str = layout.PREFIX) -> set[str]:
    """Names of root-namespace links starting with ``prefix``."""
    proc = subprocess.run(["ip", "-j", "link", "show"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise OperationError(f"`ip -j link show` failed: {proc.stderr.strip()}")
    names = {str(link.get("ifname", "")) for link in json.loads(proc.stdout or "[]")}
    return {n for n in names if n.startswith(prefix)}


def existing_netns(prefix: str = layout.PREFIX) -> set[str]:
    """Names of named network namespaces starting with ``prefix``."""
    try:
        return {n for n in os.listdir(NETNS_DIR) if n.startswith(prefix)}
    except FileNotFoundError:
        return set()


def routes_overlapping(network: str) -> list[str]:
    """Root-namespace IPv4 routes that overlap ``network`` and are not on a lab link."""
    wanted = IPv4Network(network)
    proc = subprocess.run(
        ["ip", "-j", "-4", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        return []
    found = []
    for route in json.loads(proc.stdout or "[]"):
        dst = str(route.get("dst", ""))
        dev = str(route.get("dev", ""))
        if dst in ("", "default") or dev.startswith(layout.PREFIX):
            continue
        try:
            net = IPv4Network(dst, strict=False)
        except ValueError:
            continue
        if net.overlaps(wanted) and net.prefixlen > 0:
            found.append(f"{dst} dev {dev}")
    return found
