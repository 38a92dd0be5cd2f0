"""Parsing the output of the observe script (:func:`wiremesh.remote.scripts.observe`) (pure)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Interface, IPv6Interface, ip_interface, ip_network

from wiremesh.codec.dump import parse_dump
from wiremesh.errors import OperationError
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
    if len(lines) < 2:
        return None
    digest, state = lines[0].strip(), lines[1].strip()
    if state == "managed":
        return ManagedConfig(True, "\n".join(lines[2:]) + "\n", digest)
    return ManagedConfig(False, None, digest)


def parse_addresses(lines: list[str]) -> tuple[IPInterface, ...]:
    """Global addresses from ``ip -o addr show dev IFACE`` (link-local ones are the kernel's)."""
    out: list[IPInterface] = []
    for line in lines:
        words = line.split()
        for family in ("inet", "inet6"):
            if family in words:
                value = ip_interface(words[words.index(family) + 1])
                assert isinstance(value, IPv4Interface | IPv6Interface)
                if not value.ip.is_link_local:
                    out.append(value)
    return tuple(out)


def parse_routes(lines: list[str]) -> tuple[Route, ...]:
    """Unicast routes from ``ip -o route show dev IFACE`` (both families)."""
    out: list[Route] = []
    for line in lines:
        words = line.split()
        if not words or words[0] in ROUTE_TYPES - {"unicast"}:
            continue
        if words[0] == "unicast":
            words = words[1:]
        target = words[0]
        if target == "default":
            target = "::/0" if ":" in line else "0.0.0.0/0"
        try:
            network = ip_network(target, strict=False)
        except ValueError:
            continue
        if network.is_link_local or network.is_multicast:
            continue
        protocol = words[words.index("proto") + 1] if "proto" in words else "boot"
        out.append(Route(network, protocol))
    return tuple(out)


def parse_other_routes(lines: list[str]) -> tuple[OtherRoute, ...]:
    """Routes of every table (``ip -o route show table all``) that are not on the mesh interface."""
    out: list[OtherRoute] = []
    for line in lines:
        words = line.split()
        if not words or "dev" not in words:
            continue
        kind = "unicast"
        if words[0] in ROUTE_TYPES:
            kind = words[0]
            words = words[1:]
        if not words or words[0] == "default":
            continue
        try:
            network = ip_network(words[0], strict=False)
        except ValueError:
            continue
        device = words[words.index("dev") + 1]
        out.append(OtherRoute(network, device, kind))
    return tuple(out)


def parse_other_addresses(lines: list[str]) -> tuple[tuple[str, str], ...]:
    """(address/prefix, device) of the host's other interfaces, without loopback and link-local."""
    out: list[tuple[str, str]] = []
    for line in lines:
        words = line.split()
        if len(words) < 4:
            continue
        device = words[1].split("@")[0]
        for family in ("inet", "inet6"):
            if family in words:
                text = words[words.index(family) + 1]
                try:
                    address = ip_interface(text)
                except ValueError:
                    continue
                if not (address.ip.is_loopback or address.ip.is_link_local):
                    out.append((text, device))
    return tuple(out)


def parse_underlay(lines: list[str]) -> Underlay:
    """``target device mtu`` lines and the ``default device mtu`` line."""
    mtu: dict[str, int] = {}
    default = None
    for line in lines:
        words = line.split()
        if len(words) != 3 or not words[2].isdigit() or int(words[2]) <= 0:
            continue
        if words[0] == "default":
            default = int(words[2])
        else:
            mtu[words[0]] = int(words[2])
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


def parse_link(lines: list[str]) -> tuple[bool, int | None]:
    """(up, mtu) from ``ip -o link show dev IFACE``."""
    if not lines:
        return False, None
    words = lines[0].split()
    flags = next((w for w in words if w.startswith("<")), "<>").strip("<>").split(",")
    mtu = int(words[words.index("mtu") + 1]) if "mtu" in words else None
    return "UP" in flags, mtu


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
    device = parse_dump(interface, "\n".join(part.get("dump", [])))
    up, mtu = parse_link(part.get("link", []))
    if device is not None:
        device = replace(device, addresses=parse_addresses(part.get("addr", [])), mtu=mtu)
    hosts = part.get("hosts", [])
    forward = [x.strip() == "1" for x in part.get("forward", []) if x.strip()] + [False, False]
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
        link_up=up,
        routes=parse_routes(part.get("route", [])),
        hosts_block=tuple(hosts[1:]) if hosts[:1] == ["present"] else None,
        forwarding=(forward[0], forward[1]),
        underlay=parse_underlay(part.get("underlay", [])),
        other_routes=parse_other_routes(part.get("other-routes", [])),
        other_addresses=parse_other_addresses(part.get("other-addrs", [])),
        files=parse_files(part.get("files", [])),
    )
