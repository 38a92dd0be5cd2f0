"""Parsing the output of the observe script (:func:`wiremesh.remote.scripts.observe`) (pure).

The script prints ``ip -o`` listings of all links, addresses and routes; this module sorts out what
belongs to the mesh interface and what belongs to the rest of the host.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from ipaddress import IPv4Interface, IPv6Interface, ip_interface, ip_network

from wiremesh.codec.dump import parse_dump
from wiremesh.codec.nft_host import parse_read
from wiremesh.codec.wgquick import parse
from wiremesh.errors import OperationError, ValidationError
from wiremesh.model.addressing import IPNetwork
from wiremesh.model.device import IPInterface
from wiremesh.model.host import (
    FileState,
    ManagedConfig,
    ObservedHost,
    OsInfo,
    OtherRoute,
    Route,
    Underlay,
)
from wiremesh.model.keys import PublicKey

SECTION = "@@wiremesh "
ROUTE_TYPES = {
    "unicast",
    "local",
    "broadcast",
    "multicast",
    "throw",
    "unreachable",
    "prohibit",
    "blackhole",
    "nat",
    "anycast",
}


def sections(text: str) -> dict[str, list[str]]:
    """Split script output into its sections."""
    out: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith(SECTION):
            current = out.setdefault(line[len(SECTION) :].strip(), [])
        elif current is not None:
            current.append(line)
    if "end" not in out:
        raise OperationError("the host's answer was cut short (no end marker)")
    return out


def _config(lines: list[str]) -> ManagedConfig | None:
    if not lines:
        return None
    if lines[0].strip() == "managed":
        text = "\n".join(lines[1:]) + "\n"
        try:
            peers = parse(text, "the host's config").peers
        except ValidationError:
            peers = ()
        endpoints = {p.public_key: p.endpoint for p in peers if p.endpoint is not None}
        return ManagedConfig(True, text, endpoints)
    return ManagedConfig(False, None)


@dataclass(frozen=True)
class Link:
    """One line of ``ip -o link show``."""

    name: str
    up: bool
    mtu: int | None


def parse_links(lines: list[str]) -> dict[str, Link]:
    """Links by name (``eth0@if12`` is ``eth0``)."""
    out: dict[str, Link] = {}
    for line in lines:
        words = line.split()
        if len(words) < 3 or not words[1].endswith(":"):
            continue
        name = words[1].rstrip(":").split("@")[0]
        flags = words[2].strip("<>").split(",")
        mtu = int(words[words.index("mtu") + 1]) if "mtu" in words else None
        out[name] = Link(name, "UP" in flags, mtu)
    return out


def parse_addresses(lines: list[str]) -> list[tuple[str, IPInterface]]:
    """(device, address) from ``ip -o addr show``, without link-local addresses."""
    out: list[tuple[str, IPInterface]] = []
    for line in lines:
        words = line.split()
        if len(words) < 4:
            continue
        device = words[1].split("@")[0]
        for family in ("inet", "inet6"):
            if family in words:
                try:
                    value = ip_interface(words[words.index(family) + 1])
                except ValueError:
                    continue
                assert isinstance(value, IPv4Interface | IPv6Interface)
                if not value.ip.is_link_local:
                    out.append((device, value))
    return out


@dataclass(frozen=True)
class RouteLine:
    """One line of ``ip -o route show table all``."""

    network: IPNetwork
    device: str
    kind: str
    protocol: str


def parse_route_lines(lines: list[str]) -> list[RouteLine]:
    """Every route with a device, of every table and type; ``default`` is 0.0.0.0/0 or ::/0."""
    out: list[RouteLine] = []
    for line in lines:
        words = line.split()
        if not words or "dev" not in words:
            continue
        kind = "unicast"
        if words[0] in ROUTE_TYPES:
            kind, words = words[0], words[1:]
        if not words:
            continue
        target = words[0]
        if target == "default":
            target = "::/0" if ":" in line else "0.0.0.0/0"
        try:
            network = ip_network(target, strict=False)
        except ValueError:
            continue
        device = words[words.index("dev") + 1]
        protocol = words[words.index("proto") + 1] if "proto" in words else "boot"
        out.append(RouteLine(network, device, kind, protocol))
    return out


def mesh_routes(routes: list[RouteLine], interface: str) -> tuple[Route, ...]:
    """Unicast routes through the mesh interface (link-local and multicast are the kernel's)."""
    return tuple(
        Route(r.network, r.protocol)
        for r in routes
        if r.device == interface
        and r.kind == "unicast"
        and not (r.network.is_link_local or r.network.is_multicast)
    )


def parse_underlay(lines: list[str], links: dict[str, Link], routes: list[RouteLine]) -> Underlay:
    """``@ target`` lines each followed by ``ip -o route get`` output: the route's ``mtu`` if it has
    one, else its device's MTU; and the default route's device MTU."""
    mtu: dict[str, int] = {}
    target: str | None = None
    for line in lines:
        if line.startswith("@ "):
            target = line[2:].strip()
            continue
        words = line.split()
        if target is None or "dev" not in words:
            continue
        value: int | None = None
        if "mtu" in words:
            value = int(words[words.index("mtu") + 1])
        else:
            link = links.get(words[words.index("dev") + 1])
            value = link.mtu if link else None
        if value:
            mtu[target] = value
        target = None
    default = None
    for route in routes:
        if route.network.prefixlen == 0 and route.kind == "unicast" and route.device in links:
            default = links[route.device].mtu
            break
    return Underlay(mtu, default)


def parse_files(lines: list[str]) -> dict[str, FileState]:
    """``path missing`` or ``path yes|no MODE SHA256`` lines."""
    out: dict[str, FileState] = {}
    for line in lines:
        words = line.split()
        if len(words) == 2 and words[1] == "missing":
            out[words[0]] = FileState(False)
        elif len(words) == 4:
            mode = int(words[2], 8) if words[2].isdigit() else None
            out[words[0]] = FileState(True, words[1] == "yes", words[3], mode)
    return out


def parse_wg_release(lines: list[str]) -> int | None:
    """The release date of ``wg --version`` ("wireguard-tools v1.0.20210914 - https://...")."""
    for line in lines:
        match = re.search(r"v\d+\.\d+\.(\d{8})\b", line)
        if match:
            return int(match.group(1))
    return None


def parse_observation(interface: str, text: str) -> ObservedHost:
    """The :class:`ObservedHost` from the observe script's output."""
    part = sections(text)
    tools = frozenset(line.strip() for line in part.get("tools", []) if line.strip())
    os_words = (part.get("os") or ["unknown"])[0].split()
    os = OsInfo(os_words[0] if os_words else "unknown", tuple(os_words[1:]))
    kernel = (part.get("kernel") or ["missing"])[0].strip() in ("loaded", "available")
    systemd_lines = part.get("systemd", [])
    systemd = bool(systemd_lines) and systemd_lines[0].strip() == "running"
    enabled = systemd and len(systemd_lines) > 1 and systemd_lines[1].strip() == "enabled"
    now_lines = [x for x in part.get("now", []) if x.strip()]
    now = int(now_lines[0]) if now_lines else 0
    key_lines = [x for x in part.get("pubkey", []) if x.strip()]
    public_key = PublicKey.parse(key_lines[0].strip(), "host public key") if key_lines else None
    links = parse_links(part.get("links", []))
    addresses = parse_addresses(part.get("addrs", []))
    routes = parse_route_lines(part.get("routes", []))
    device = parse_dump(interface, "\n".join(part.get("dump", [])))
    link = links.get(interface)
    if device is not None:
        own = tuple(a for d, a in addresses if d == interface)
        device = replace(device, addresses=own, mtu=link.mtu if link else None)
    hosts = part.get("hosts", [])
    forward = [x.strip() == "1" for x in part.get("forward", []) if x.strip()] + [False, False]
    others = tuple(
        OtherRoute(r.network, r.device, r.kind)
        for r in routes
        if r.device != interface and r.network.prefixlen > 0
    )
    other_addresses = tuple(
        (str(a), d) for d, a in addresses if d != interface and not a.ip.is_loopback
    )
    return ObservedHost(
        tools=tools,
        os=os,
        kernel_module=kernel,
        systemd=systemd,
        service_enabled=enabled,
        now=now,
        public_key=public_key,
        config=_config(part.get("config", [])),
        device=device,
        link_up=link.up if link else False,
        routes=mesh_routes(routes, interface),
        hosts_block=tuple(hosts[1:]) if hosts[:1] == ["present"] else None,
        forwarding=(forward[0], forward[1]),
        underlay=parse_underlay(part.get("underlay", []), links, routes),
        other_routes=others,
        other_addresses=other_addresses,
        files=parse_files(part.get("files", [])),
        wg_release=parse_wg_release(part.get("wgversion", [])),
        key_file=public_key is not None,
        firewall=parse_read("\n".join(part["nft"])) if "nft" in part else None,
    )
