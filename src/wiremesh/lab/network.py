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
from ipaddress import IPv4Interface, IPv6Interface, ip_network
from pathlib import Path

from wiremesh.errors import OperationError
from wiremesh.lab import layout, topology
from wiremesh.lab.spec import make_spec

IPInterface = IPv4Interface | IPv6Interface

NETNS_DIR = Path("/run/netns")
"""Where ``ip netns add`` bind-mounts named network namespaces (ip-netns(8))."""


@dataclass(frozen=True)
class Bridge:
    """A bridge in the root namespace. ``addresses`` are the root namespace's own on it (may be none)."""

    name: str
    addresses: tuple[IPInterface, ...] = ()
    mtu: int | None = None
    private: bool = False
    """A pure L2 segment between namespaces: the root namespace takes no part in it (no IPv6
    link-local address, no ARP), so nothing of the root's own leaks onto it or is answered from it."""


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
class Tap:
    """A tap device in the root namespace on ``bridge``: a VM's network card (QEMU opens it)."""

    name: str
    bridge: str
    mtu: int | None = None


@dataclass(frozen=True)
class Network:
    """Everything the underlay consists of."""

    bridges: tuple[Bridge, ...]
    namespaces: tuple[Namespace, ...] = field(default=())
    taps: tuple[Tap, ...] = field(default=())

    @property
    def links(self) -> list[str]:
        """Names of every root-namespace link (bridges, veth ends and taps)."""
        return [b.name for b in self.bridges] + self.veths + [t.name for t in self.taps]

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
            lines.extend(
                f"addr add {a.with_prefixlen} dev {b.name}{_nodad(a)}" for a in b.addresses
            )
            if b.private:
                lines.append(f"link set {b.name} addrgenmode none arp off")
            lines.append(f"link set {b.name} up")
        for ns in self.namespaces:
            lines.append(f"netns add {ns.name}")
            for p in ns.ports:
                mtu = _mtu(p.mtu)
                lines.append(
                    f"link add {p.peer}{mtu} type veth peer name {p.ifname}{mtu} netns {ns.name}"
                )
                # The root end is only a bridge port: no link-local address of the root's on it.
                lines.append(f"link set {p.peer} addrgenmode none")
                lines.append(f"link set {p.peer} master {p.bridge} up")
        for t in self.taps:
            # vnet_hdr: QEMU's virtio-net passes offloads through it (checksums, segmentation).
            lines.append(f"tuntap add dev {t.name} mode tap vnet_hdr")
            if t.mtu is not None:
                lines.append(f"link set {t.name} mtu {t.mtu}")
            lines.append(f"link set {t.name} addrgenmode none")
            lines.append(f"link set {t.name} master {t.bridge} up")
        return lines

    def namespace_batch(self, name: str) -> list[str]:
        """``ip -batch`` lines to run inside namespace ``name``: loopback, addresses, links up, routes."""
        ns = self.namespace(name)
        lines = ["link set lo up"]
        for p in ns.ports:
            lines.extend(
                f"addr add {a.with_prefixlen} dev {p.ifname}{_nodad(a)}" for a in p.addresses
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


def _nodad(address: IPInterface) -> str:
    # nodad: an address must be usable at once, since sshd binds to it right after (RFC 4862
    # duplicate address detection would keep an IPv6 address "tentative" for a second or more).
    return " nodad" if isinstance(address, IPv6Interface) else ""


def flat_network(hosts: Sequence[layout.HostAddress]) -> Network:
    """Issue 3's underlay: every host on the public bridge, no routes beyond 198.51.100.0/24."""
    return lab_network(topology.plan_lab(make_spec(len(hosts))))


def lab_network(plan: topology.LabPlan) -> Network:
    """The underlay of ``plan``: the public bridge, one private bridge per site and per NAT LAN, a
    namespace per namespace host and per NAT router, a tap on the public bridge per VM.

    Public and site hosts have no route beyond their bridges' subnets; a NAT host's only way out is its
    default route through its router. The root namespace has an address on the public bridge only.
    """
    public = Bridge(
        layout.PUBLIC_BRIDGE,
        addresses=(layout.UNDERLAY_GATEWAY,)
        + ((layout.UNDERLAY6_GATEWAY,) if plan.spec.ipv6 else ()),
    )
    bridges = [public]
    bridges += [Bridge(s.bridge, private=True) for s in plan.sites]
    bridges += [Bridge(r.lan_bridge, private=True) for r in plan.routers]
    sites = {s.name: s for s in plan.sites}
    lans = {r.name: r for r in plan.routers}
    namespaces = []
    # A VM's address is configured inside the VM (from its identity disk); here it is only a tap.
    taps = tuple(Tap(h.tap, public.name, h.mtu) for h in plan.vms)
    for h in plan.namespace_hosts:
        ports = []
        routes: tuple[Route, ...] = ()
        if h.role == "nat":
            assert h.group is not None and h.private is not None and h.gateway is not None
            ports.append(_port(h, "eth0", lans[h.group].lan_bridge, (h.private,)))
            routes = (Route("default", via=str(h.gateway)),)
        else:
            assert h.public is not None
            ours: tuple[IPInterface, ...] = (h.public,) + ((h.public6,) if h.public6 else ())
            ports.append(_port(h, "eth0", public.name, ours))
        if h.role == "site":
            assert h.group is not None and h.private is not None
            ports.append(_port(h, "eth1", sites[h.group].bridge, (h.private,)))
        namespaces.append(Namespace(h.netns, tuple(ports), routes))
    for r in plan.routers:
        namespaces.append(
            Namespace(
                r.netns,
                ports=(
                    Port("wan", layout.link_name("nat", r.name, "w"), public.name, (r.wan,)),
                    Port("lan", layout.link_name("nat", r.name, "l"), r.lan_bridge, (r.lan,)),
                ),
            )
        )
    return Network(bridges=tuple(bridges), namespaces=tuple(namespaces), taps=taps)


def _port(
    host: topology.HostPlan, ifname: str, bridge: str, addresses: tuple[IPInterface, ...]
) -> Port:
    # A host's underlay MTU applies to both ends of each of its veths: a bigger frame is dropped on
    # its link whichever way it goes (a bridge drops frames larger than the egress port's MTU).
    return Port(ifname, layout.veth_name(host.name, ifname), bridge, addresses, host.mtu)


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
    """Root-namespace routes (IPv4 or IPv6, as ``network`` is) that overlap ``network`` and are not on a
    lab link."""
    wanted = ip_network(network)
    family = "-4" if wanted.version == 4 else "-6"
    proc = subprocess.run(
        ["ip", "-j", family, "route", "show", "table", "all"],
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
            net = ip_network(dst, strict=False)
        except ValueError:
            continue
        if net.prefixlen > 0 and net.version == wanted.version and net.overlaps(wanted):
            found.append(f"{dst} dev {dev}")
    return found
