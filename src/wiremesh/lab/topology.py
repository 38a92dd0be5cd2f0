"""Where everything in a lab lives (:class:`LabPlan`), computed from its :class:`LabSpec`: pure.

See :mod:`wiremesh.lab.layout` for the addressing plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address, IPv6Interface
from typing import Any, Literal

from wiremesh.lab import layout
from wiremesh.lab.layout import (
    NAT_BLOCKS,
    OVERLAY6_CIDR,
    PRIVATE_HOST_OFFSET,
    ROUTER_OFFSET,
    SITE_BLOCKS,
    SSH_FORWARD_BASE,
    UNDERLAY6,
    lan_bridge,
    router_netns,
    site_bridge,
)
from wiremesh.lab.spec import LabSpec

Role = Literal["public", "site", "nat"]
Kind = Literal["namespace", "vm"]
"""What a host is: namespaces on this machine's kernel, or a QEMU virtual machine with its own."""


@dataclass(frozen=True)
class HostPlan:
    """Where one host lives. ``eth0`` is on the public bridge (public and site hosts) or on its NAT LAN;
    a site host's ``eth1`` is on its site bridge."""

    index: int
    name: str
    role: Role
    group: str | None
    """The site or NAT name (``None`` for a public host)."""
    public: IPv4Interface | None
    """Its own address on the public bridge (none for a NAT host)."""
    public6: IPv6Interface | None
    private: IPv4Interface | None
    """Its site address (eth1), or its NAT LAN address (eth0)."""
    gateway: IPv4Address | None
    """The NAT router's LAN address: the host's default route."""
    nat_ip: IPv4Address | None
    """The NAT router's public address: where the host's traffic appears to come from."""
    mtu: int | None
    overlay: IPv4Address
    overlay6: IPv6Address | None
    ssh_address: IPv4Address
    ssh_port: int
    kind: Kind = "namespace"

    @property
    def netns(self) -> str:
        """Its network namespace (a namespace host's; a VM has none)."""
        return layout.netns_name(self.name)

    @property
    def tap(self) -> str:
        """A VM's network card in the root namespace: a tap on the public bridge."""
        return layout.link_name(self.name, "tap")

    @property
    def underlay(self) -> IPv4Interface:
        """The address of its eth0: public for public and site hosts, the LAN address behind a NAT."""
        found = self.public or self.private
        assert found is not None
        return found

    @property
    def listen(self) -> list[IPv4Address | IPv6Address]:
        """Where its sshd listens: its eth0 address(es)."""
        out: list[IPv4Address | IPv6Address] = [self.underlay.ip]
        if self.public6 is not None:
            out.append(self.public6.ip)
        return out


@dataclass(frozen=True)
class SitePlan:
    """A site: its private bridge (no root-namespace address) and subnet."""

    name: str
    bridge: str
    network: IPv4Network


@dataclass(frozen=True)
class Forward:
    """A TCP port forward on a NAT router's public address to a host's sshd."""

    port: int
    host: str
    to: IPv4Address


@dataclass(frozen=True)
class RouterPlan:
    """A NAT router: its own netns, ``wan`` on the public bridge, ``lan`` on its LAN bridge."""

    name: str
    netns: str
    wan: IPv4Interface
    lan: IPv4Interface
    lan_bridge: str
    forwards: tuple[Forward, ...]

    @property
    def network(self) -> IPv4Network:
        """The LAN subnet behind the router."""
        return self.lan.network


@dataclass(frozen=True)
class LabPlan:
    """Every host, site and router of a lab, with names and addresses."""

    spec: LabSpec
    hosts: tuple[HostPlan, ...]
    sites: tuple[SitePlan, ...]
    routers: tuple[RouterPlan, ...]

    def host(self, name: str) -> HostPlan:
        """The host called ``name``."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    @property
    def vms(self) -> tuple[HostPlan, ...]:
        """The hosts that are VMs."""
        return tuple(h for h in self.hosts if h.kind == "vm")

    @property
    def namespace_hosts(self) -> tuple[HostPlan, ...]:
        """The hosts that are namespaces."""
        return tuple(h for h in self.hosts if h.kind == "namespace")

    @property
    def relay(self) -> str | None:
        """The host the inventory names as relay: the first host with a public endpoint, if there are
        NAT hosts at all (public hosts come first, so it is a public host when there is one)."""
        if not self.spec.nats:
            return None
        return next((h.name for h in self.hosts if h.public is not None), None)


def _public(index: int) -> IPv4Interface:
    return IPv4Interface(f"{layout.underlay_ip(index)}/{layout.UNDERLAY.prefixlen}")


def _public6(index: int) -> IPv6Interface:
    # "lab1 is 2001:db8::11": the host's last IPv4 octet, read as hex digits, so they look alike.
    return IPv6Interface(
        f"{UNDERLAY6[int(str(layout.HOST_OFFSET + index), 16)]}/{UNDERLAY6.prefixlen}"
    )


def _in_block(block: IPv4Network, n: int) -> IPv4Interface:
    return IPv4Interface(f"{block[PRIVATE_HOST_OFFSET + n]}/{block.prefixlen}")


def plan_lab(spec: LabSpec) -> LabPlan:
    """Names and addresses of everything in the lab described by ``spec`` (already validated)."""
    hosts: list[HostPlan] = []
    index = 0

    def add(role: Role, group: str | None, kind: Kind = "namespace", **where: Any) -> None:
        nonlocal index
        index += 1
        name = layout.host_name(index)
        public = where.get("public")
        hosts.append(
            HostPlan(
                index=index,
                name=name,
                role=role,
                group=group,
                public=public,
                public6=_public6(index) if spec.ipv6 and public is not None else None,
                private=where.get("private"),
                gateway=where.get("gateway"),
                nat_ip=where.get("nat_ip"),
                mtu=spec.host_mtu(name),
                overlay=layout.overlay_ip(index),
                overlay6=OVERLAY6_CIDR[index] if spec.ipv6 else None,
                ssh_address=where.get("ssh_address", public.ip if public else IPv4Address(0)),
                ssh_port=where.get("ssh_port", layout.SSH_PORT),
                kind=kind,
            )
        )

    for _ in range(spec.public):
        add("public", None, public=_public(index + 1))
    sites = []
    for k, g in enumerate(spec.sites):
        block = SITE_BLOCKS[k]
        sites.append(SitePlan(g.name, site_bridge(g.name), block))
        for n in range(1, g.count + 1):
            add("site", g.name, public=_public(index + 1), private=_in_block(block, n))
    routers = []
    for j, g in enumerate(spec.nats, 1):
        block = NAT_BLOCKS[j - 1]
        wan = IPv4Interface(f"{layout.UNDERLAY[ROUTER_OFFSET + j]}/{layout.UNDERLAY.prefixlen}")
        lan = IPv4Interface(f"{block[1]}/{block.prefixlen}")
        forwards = []
        for n in range(1, g.count + 1):
            private = _in_block(block, n)
            port = SSH_FORWARD_BASE + index + 1
            forwards.append(Forward(port, layout.host_name(index + 1), private.ip))
            add(
                "nat",
                g.name,
                private=private,
                gateway=lan.ip,
                nat_ip=wan.ip,
                ssh_address=wan.ip,
                ssh_port=port,
            )
        routers.append(
            RouterPlan(g.name, router_netns(g.name), wan, lan, lan_bridge(g.name), tuple(forwards))
        )
    for _ in range(spec.vms):
        add("public", None, "vm", public=_public(index + 1))
    return LabPlan(spec, tuple(hosts), tuple(sites), tuple(routers))
