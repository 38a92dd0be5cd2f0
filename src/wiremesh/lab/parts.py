"""The parts of a running lab as :class:`~wiremesh.lab.Lab` shows them: hosts, sites, NAT routers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network, IPv6Address

from wiremesh.lab import topology
from wiremesh.lab.nat import netns_argv


@dataclass(frozen=True)
class LabHost:
    """A running lab host.

    Its ``eth0`` is on the public bridge (public and site hosts) or on its NAT LAN (NAT hosts); a site
    host's ``eth1`` is on its site's private bridge.
    """

    name: str
    index: int
    underlay_ip: IPv4Address
    """The address of its eth0: its public address, or its LAN address behind a NAT."""
    netns: str | None
    """Its network namespace: ``ip netns exec <netns> ...`` works from the root namespace (``None``
    for a VM)."""
    pid: int
    """Its PID 1 as a PID of the root namespace (``nsenter -t <pid> ...``); a VM's QEMU process."""
    role: topology.Role = "public"
    """``public``, ``site`` or ``nat``."""
    group: str | None = None
    """Its site or NAT name."""
    public_ip: IPv4Address | None = None
    """Its own address on the public bridge (``None`` behind a NAT)."""
    private_ip: IPv4Address | None = None
    """Its address on its site's bridge, or on its NAT LAN."""
    underlay6: IPv6Address | None = None
    """Its IPv6 address on the public bridge (``--ipv6``)."""
    nat_ip: IPv4Address | None = None
    """Behind a NAT: the router's public address, where its traffic appears to come from."""
    mtu: int = 1500
    """The MTU of its underlay link(s), both ends."""
    ssh_address: IPv4Address | None = None
    ssh_port: int = 22
    """Where the root namespace reaches its sshd (a NAT router's forwarded port for a NAT host)."""
    kind: topology.Kind = "namespace"
    """``namespace`` (namespaces on this machine's kernel, wireguard-go) or ``vm`` (a QEMU VM with its
    own kernel, the WireGuard module and systemd)."""
    tap: str | None = None
    """A VM's network card in the root namespace (a tap on the public bridge)."""


@dataclass(frozen=True)
class LabSite:
    """A site: a private bridge (pure L2, no root-namespace address) and its subnet."""

    name: str
    bridge: str
    network: IPv4Network


@dataclass(frozen=True)
class LabRouter:
    """A NAT router: a network namespace with ``wan`` on the public bridge and ``lan`` on its LAN."""

    name: str
    netns: str
    wan_ip: IPv4Address
    lan: IPv4Interface
    """Its LAN address (the NAT hosts' default gateway) and the LAN subnet."""
    lan_bridge: str
    ssh_ports: Mapping[str, int]
    """Host name -> the TCP port on ``wan_ip`` forwarded to that host's sshd."""

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` in the router's namespace (``ip netns exec``)."""
        return netns_argv(self.netns, argv)
