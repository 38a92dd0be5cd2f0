"""What a host is observed to be (beyond its WireGuard device), and what we want there.

:class:`ObservedHost` is filled from one read-only round trip to the host (see
:mod:`wiremesh.codec.observe`); :class:`WantedHost` is derived from the inventory. Neither holds a
private key: the observe script hides the key field of ``wg show dump`` on the host itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network

from wiremesh.model.addressing import IPNetwork
from wiremesh.model.device import ObservedDevice, WantedDevice
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.keys import PublicKey
from wiremesh.model.nft import HostFirewall
from wiremesh.model.nft_host import NftHostState

REQUIRED_TOOLS = ("wg", "wg-quick", "ip")
INCREMENTAL_WG = 20250521
"""The wireguard-tools release (v1.0.20250521) whose ``wg set`` understands ``allowed-ips +prefix``."""

# Debian/Ubuntu, Fedora/RHEL, Alpine, Arch, openSUSE: the package that ships each tool.
PACKAGES: dict[str, dict[str, str]] = {
    "debian": {
        "wg": "wireguard-tools",
        "wg-quick": "wireguard-tools",
        "ip": "iproute2",
        "wireguard-go": "wireguard-go",
        "nft": "nftables",
    },
    "rhel": {
        "wg": "wireguard-tools",
        "wg-quick": "wireguard-tools",
        "ip": "iproute",
        "wireguard-go": "wireguard-go",
        "nft": "nftables",
    },
    "alpine": {
        "wg": "wireguard-tools",
        "wg-quick": "wireguard-tools",
        "ip": "iproute2",
        "wireguard-go": "wireguard-go",
        "nft": "nftables",
    },
    "arch": {
        "wg": "wireguard-tools",
        "wg-quick": "wireguard-tools",
        "ip": "iproute2",
        "wireguard-go": "wireguard-go",
        "nft": "nftables",
    },
    "suse": {
        "wg": "wireguard-tools",
        "wg-quick": "wireguard-tools",
        "ip": "iproute2",
        "wireguard-go": "wireguard-go",
        "nft": "nftables",
    },
}
INSTALLERS = {
    "debian": "apt-get install -y",
    "rhel": "dnf install -y",
    "alpine": "apk add",
    "arch": "pacman -S --noconfirm",
    "suse": "zypper install -y",
}


@dataclass(frozen=True)
class OsInfo:
    """From /etc/os-release: ``ID`` and ``ID_LIKE``."""

    id: str = "unknown"
    like: tuple[str, ...] = ()

    @property
    def family(self) -> str | None:
        """The package family (debian, rhel, alpine, arch, suse), if known."""
        names = (self.id, *self.like)
        aliases = {
            "ubuntu": "debian",
            "fedora": "rhel",
            "centos": "rhel",
            "rocky": "rhel",
            "almalinux": "rhel",
            "opensuse": "suse",
            "opensuse-leap": "suse",
            "sles": "suse",
        }
        for name in names:
            family = aliases.get(name, name)
            if family in PACKAGES:
                return family
        return None

    def install_hint(self, tools: list[str]) -> str:
        """How to install the packages that provide ``tools`` on this distribution."""
        family = self.family
        if family is None:
            return f"install {', '.join(tools)} with the host's package manager"
        packages = sorted({PACKAGES[family].get(t, t) for t in tools})
        return f"on the host run: {INSTALLERS[family]} {' '.join(packages)}"


@dataclass(frozen=True)
class ManagedConfig:
    """``/etc/wireguard/<iface>.conf`` as found: ours (text, without any PrivateKey line), or not."""

    managed: bool
    text: str | None  # the text when managed; None for a file that is not ours
    # the endpoint the file gives each peer (read from our file: to tell a roamed endpoint apart)
    endpoints: Mapping[PublicKey, Endpoint] = field(default_factory=dict, compare=False)

    @property
    def mesh(self) -> str | None:
        """The mesh named in our marker line (``... managed file: node N of mesh M``), if any."""
        if not self.managed or not self.text:
            return None
        first = self.text.split("\n", 1)[0]
        if " of mesh " not in first:
            return None
        return first.rsplit(" of mesh ", 1)[1].strip() or None


@dataclass(frozen=True)
class ManagedFile:
    """A file wiremesh writes on a host besides the WireGuard config (k3s' config.yaml...).

    Its text starts with :data:`FILE_MARKER` so that wiremesh recognises it later; a file at the
    same path without the marker was written by someone else and is never touched.
    """

    path: str
    text: str
    mode: int = 0o600
    # A host command run once after the file (or any file with the same command) was written:
    # a systemd reload, say. It must be safe to run again.
    activate: str | None = None
    # False: the file must not be there. If it is, and is ours, it is removed (after ``deactivate``
    # ran once): how an opt-in such as ``[metrics] textfile`` is undone.
    present: bool = True
    deactivate: str | None = None

    @property
    def sha256(self) -> str:
        """Hex digest of the text, as ``sha256sum`` prints it on the host."""
        import hashlib

        return hashlib.sha256(self.text.encode()).hexdigest()


FILE_MARKER = "# wiremesh: managed file"


@dataclass(frozen=True)
class FileState:
    """A managed file's path as found on a host."""

    exists: bool
    managed: bool = False
    sha256: str | None = None
    mode: int | None = None


@dataclass(frozen=True)
class Route:
    """A route through the WireGuard interface."""

    network: IPNetwork
    protocol: str  # "kernel" routes come from interface addresses; others were added


@dataclass(frozen=True)
class OtherRoute:
    """A route of the host that does not go through the mesh interface."""

    network: IPNetwork
    device: str
    kind: str  # "unicast", "local", "broadcast"...


@dataclass(frozen=True)
class Underlay:
    """MTU of the route toward each peer address (``ip route get``), and of the default route."""

    mtu: dict[str, int] = field(default_factory=dict)
    default_mtu: int | None = None


@dataclass(frozen=True)
class ObservedHost:
    """Everything one read-only round trip tells about a host."""

    tools: frozenset[str]
    os: OsInfo
    kernel_module: bool
    systemd: bool
    service_enabled: bool
    now: int
    public_key: PublicKey | None
    config: ManagedConfig | None
    device: ObservedDevice | None
    link_up: bool = False
    routes: tuple[Route, ...] = ()
    hosts_block: tuple[str, ...] | None = None  # our /etc/hosts block's lines; None: no block
    forwarding: tuple[bool, bool] = (False, False)  # IPv4, IPv6
    underlay: Underlay = field(default_factory=Underlay)
    other_routes: tuple[OtherRoute, ...] = ()
    other_addresses: tuple[tuple[str, str], ...] = ()  # (address/prefix, device)
    files: dict[str, FileState] = field(default_factory=dict)  # the paths asked for
    wg_release: int | None = None  # wireguard-tools release date (v1.0.20210914 -> 20210914)
    # The key file exists and is not empty (public_key may come from elsewhere).
    key_file: bool = True
    firewall: NftHostState | None = None  # our nftables table and its state; None: not read

    def missing_tools(self) -> list[str]:
        """Required tools that are not installed."""
        missing = [t for t in REQUIRED_TOOLS if t not in self.tools]
        if not self.kernel_module and "wireguard-go" not in self.tools:
            missing.append("wireguard-go")
        return missing

    @property
    def incremental_wg(self) -> bool:
        """True when the host's ``wg set`` can add allowed IPs without replacing the others
        (``allowed-ips +prefix``, wireguard-tools v1.0.20250521 and later)."""
        return self.wg_release is not None and self.wg_release >= INCREMENTAL_WG

    @property
    def backend(self) -> str:
        """How WireGuard runs here: the kernel module or userspace wireguard-go."""
        return "kernel" if self.kernel_module else "wireguard-go"


@dataclass(frozen=True)
class WantedHost:
    """What we want on one host: the device, the config file text, the routes, the service."""

    device: WantedDevice
    config_text: str
    routes: tuple[IPNetwork, ...] = field(default=())
    hosts_block: tuple[str, ...] = ()
    files: tuple[ManagedFile, ...] = ()
    forwarding: tuple[bool, bool] = (False, False)  # needed for IPv4, IPv6 (relay, routed subnets)
    mesh_networks: tuple[IPNetwork, ...] = ()
    mesh: str = "mesh"  # the mesh's name, as the config file's marker line says it
    firewall: HostFirewall | None = None  # our nftables table, compiled from the policy


def conflicts(observed: ObservedHost, networks: tuple[IPNetwork, ...], interface: str) -> list[str]:
    """Routes and addresses of the host, outside the mesh interface, that overlap a mesh network.

    Such a host would send mesh traffic elsewhere (a cloud VPC in 10.0.0.0/8, a docker bridge...).
    Default routes overlap everything and are not counted.
    """
    from ipaddress import ip_interface

    out: list[str] = []
    for route in observed.other_routes:
        if route.device == interface or route.network.prefixlen == 0:
            continue
        if route.kind != "unicast":  # local routes are addresses: checked below
            continue
        for net in networks:
            if net.version == route.network.version and net.overlaps(route.network):
                out.append(
                    f"route {route.network} dev {route.device} overlaps the mesh network {net}"
                )
    for text, device in observed.other_addresses:
        if device == interface:
            continue
        address = ip_interface(text)
        for net in networks:
            if net.version == address.version and address.network.overlaps(net):
                message = f"address {text} on {device} overlaps the mesh network {net}"
                if message not in out:
                    out.append(message)
    return sorted(set(out), key=out.index)


def interface_networks(device: WantedDevice) -> list[IPv4Network | IPv6Network]:
    """The networks of the interface addresses (their routes come with the addresses)."""
    return [a.network for a in device.interface.addresses]


def extra_routes(device: WantedDevice) -> tuple[IPNetwork, ...]:
    """AllowedIPs not inside an interface network: they need a route through the interface.

    wg-quick adds such routes at ``up`` (wg-quick(8): "routes ... are added for each AllowedIPs"),
    skipping those already covered by the interface's own subnet; live changes must do the same.
    """
    local = interface_networks(device)
    out: list[IPNetwork] = []
    for peer in device.peers:
        for net in peer.allowed_ips:
            covered = any(net.version == n.version and net.subnet_of(n) for n in local)  # type: ignore[arg-type]
            if not covered:
                out.append(net)
    return tuple(out)
