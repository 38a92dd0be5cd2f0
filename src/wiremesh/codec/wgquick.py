"""wg-quick(8) configuration files: render and parse.

Parsing follows wg-quick and wg(8): section and key names are case-insensitive, ``#`` starts a comment
anywhere on a line, ``Address`` and ``AllowedIPs`` may repeat and hold comma-separated lists. Keys that
wiremesh does not model (``DNS``, ``PostUp``, ``Table``...) are kept as ``extra`` so that an import can
report them.

Rendering is structural: every line is a constant key and a value that passed a guard of
:mod:`wiremesh.model.safe` (printable ASCII, no ``#``, no zone id), every comment is checked to
stay on its line. So no value, whatever validation let through, can add a line or a key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from ipaddress import IPv4Interface, IPv6Interface, ip_interface, ip_network

from wiremesh.errors import ValidationError, quote
from wiremesh.model.addressing import IPNetwork, refuse_zone
from wiremesh.model.device import IPInterface, WantedDevice, WantedPeer
from wiremesh.model.endpoint import Endpoint, digits
from wiremesh.model.host import FILE_MARKER
from wiremesh.model.keys import PrivateKey, PublicKey
from wiremesh.model.safe import IPValue, comment_text, config_value, ip_text

MANAGED_MARKER = FILE_MARKER  # the first line of every file wiremesh writes


# --- how the private key appears in a rendered file -------------------------------------------


@dataclass(frozen=True)
class LiteralKey:
    """The key itself (offline render, ``show --reveal``)."""

    key: PrivateKey


@dataclass(frozen=True)
class HiddenKey:
    """A placeholder for display (``show`` without ``--reveal``)."""

    where: str


UNKNOWN_PEER_KEY = "<not known yet: run 'wiremesh apply' or 'wiremesh render'>"
"""What ``show`` prints for a peer whose public key does not exist yet: wg refuses the line, so the
text cannot be used as a config by mistake while a peer is missing."""


@dataclass(frozen=True)
class KeyFile:
    """The key stays in a file on the host; the host adds the ``PrivateKey`` line to the config.

    The operator never holds the key: the text rendered here has no ``PrivateKey`` line, and the
    host's write step inserts it from ``path`` (see :mod:`wiremesh.remote.live`).
    The key must be in the file itself, not loaded by a PostUp: ``wg setconf``/``wg syncconf`` of a
    config without ``PrivateKey`` clears the interface's key (wg(8) config.c sets
    WGDEVICE_HAS_PRIVATE_KEY for every non-append config), which would break every session.
    """

    path: str


KeySource = LiteralKey | HiddenKey | KeyFile


# --- parsed files -----------------------------------------------------------------------------


@dataclass(frozen=True)
class InterfaceSection:
    """The ``[Interface]`` section as written in a file."""

    private_key: PrivateKey | None
    addresses: tuple[IPInterface, ...]
    listen_port: int | None
    mtu: int | None
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PeerSection:
    """One ``[Peer]`` section as written in a file; ``comment`` is the comment line just above it."""

    public_key: PublicKey
    endpoint: Endpoint | None
    allowed_ips: tuple[IPNetwork, ...]
    persistent_keepalive: int | None
    comment: str | None = None
    line: int = 0
    extra: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class WgQuickConfig:
    """A whole wg-quick file."""

    interface: InterfaceSection
    peers: tuple[PeerSection, ...]
    managed: bool = False


# --- render -----------------------------------------------------------------------------------


def _line(key: str, value: object) -> str:
    return f"{key} = {config_value(value, key)}"


_FIREWALL_FILE = re.compile(r"^/etc/wireguard/wiremesh-[a-zA-Z0-9_=+.-]{1,15}\.nft$")


def _firewall_file(path: str) -> str:
    """The only hook wiremesh writes loads its own table file: a path of exactly that form (a hook
    is a command wg-quick runs as root)."""
    if not _FIREWALL_FILE.match(path):
        raise ValueError(f"refusing to write a PreUp hook for {path!r}")
    return path


def _ips(items: tuple[IPValue, ...], key: str) -> str:
    return ", ".join(ip_text(i, key) for i in items)


def _endpoint(endpoint: Endpoint) -> str:
    if not isinstance(endpoint.host, str):
        ip_text(endpoint.host, "Endpoint")  # refuses a zone id
    return str(endpoint)


def _peer_block(device: WantedDevice, peer: WantedPeer, unknown_keys: bool = False) -> str:
    lines = ["", "# " + comment_text(peer.name, "a peer name"), "[Peer]"]
    if peer.public_key is not None:
        lines.append(_line("PublicKey", peer.public_key))
    elif unknown_keys:
        lines.append(f"PublicKey = {UNKNOWN_PEER_KEY}")
    else:
        raise ValidationError(
            f"cannot render {device.node}: the public key of peer {quote(peer.name)} is not known yet",
            "run 'wiremesh apply' (creates keys on the hosts) or 'wiremesh render' first",
        )
    if peer.endpoint is not None:
        lines.append(_line("Endpoint", _endpoint(peer.endpoint)))
    if peer.allowed_ips:  # a probe peer (NAT pair routed through a relay) has none
        lines.append(_line("AllowedIPs", _ips(peer.allowed_ips, "AllowedIPs")))
    if peer.persistent_keepalive:
        lines.append(_line("PersistentKeepalive", int(peer.persistent_keepalive)))
    return "\n".join(lines) + "\n"


def render(
    device: WantedDevice,
    key: KeySource,
    header: str | None = None,
    memo: dict[int, str] | None = None,
    unknown_keys: bool = False,
) -> str:
    """The wg-quick file for ``device``. Every peer needs a known public key, unless
    ``unknown_keys`` (``show``): a peer without one then gets :data:`UNKNOWN_PEER_KEY`, which
    makes the text unusable as a config, visibly.

    Each ``[Peer]`` is preceded by ``# <name>``, which :func:`parse` gives back as the peer's comment.
    ``memo`` caches peer blocks by peer identity across calls, for devices made by
    :func:`wiremesh.model.topology.wanted_mesh` (which shares peer values between devices).
    """
    iface = device.interface
    lines = [MANAGED_MARKER + (": " + comment_text(header, "the header") if header else "")]
    lines.append("[Interface]")
    if isinstance(key, LiteralKey):
        lines.append(_line("PrivateKey", key.key.reveal()))
    elif isinstance(key, HiddenKey):
        lines.append(_line("PrivateKey", f"<hidden: {key.where}>"))
    lines.append(_line("Address", _ips(iface.addresses, "Address")))
    lines.append(_line("ListenPort", int(iface.listen_port)))
    if iface.mtu is not None:
        lines.append(_line("MTU", int(iface.mtu)))
    if iface.firewall_file is not None:
        lines.append(_line("PreUp", f"nft -f {_firewall_file(iface.firewall_file)}"))
    parts = ["\n".join(lines) + "\n"]
    if memo is None:
        parts.extend(_peer_block(device, peer, unknown_keys) for peer in device.peers)
    else:
        blocks = [memo.get(id(peer)) for peer in device.peers]
        for i, block in enumerate(blocks):
            if block is None:
                peer = device.peers[i]
                blocks[i] = memo[id(peer)] = _peer_block(device, peer, unknown_keys)
        parts.extend(b for b in blocks if b is not None)
    return "".join(parts)


# --- parse ------------------------------------------------------------------------------------


class _Section:
    def __init__(self, kind: str, line: int, comment: str | None) -> None:
        self.kind = kind
        self.line = line
        self.comment = comment
        self.items: list[tuple[str, str, int]] = []  # (lower-case key, value, line)


def _sections(text: str, source: str) -> tuple[list[_Section], bool]:
    sections: list[_Section] = []
    last_comment: str | None = None
    managed = False
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith(MANAGED_MARKER):
            managed = True
        if stripped.startswith("#"):
            last_comment = stripped.lstrip("#").strip() or None
            continue
        # wg-quick strips everything after '#' (wg-quick.bash: stripped="${line%%\#*}").
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            kind = line[1:-1].strip().lower()
            if kind not in ("interface", "peer"):
                raise ValidationError(
                    f"{source}:{number}: unknown section {quote(line)}",
                    "a wg-quick file has one [Interface] and any number of [Peer] sections",
                )
            sections.append(_Section(kind, number, last_comment))
            last_comment = None
            continue
        last_comment = None
        if "=" not in line:
            raise ValidationError(f"{source}:{number}: expected 'Key = Value', got {quote(line)}")
        key, value = (part.strip() for part in line.split("=", 1))
        if not sections:
            raise ValidationError(
                f"{source}:{number}: {quote(key)} appears before any [Interface] or [Peer]"
            )
        sections[-1].items.append((key.lower(), value, number))
    return sections, managed


def _int(value: str, what: str, low: int, high: int) -> int:
    if not digits(value) or len(value) > 9 or not low <= int(value) <= high:
        raise ValidationError(f"{what}: {quote(value)} is not a number from {low} to {high}")
    return int(value)


def _list(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _interface(section: _Section, source: str) -> InterfaceSection:
    private_key = None
    addresses: list[IPInterface] = []
    listen_port = mtu = None
    extra: list[tuple[str, str]] = []
    for key, value, number in section.items:
        where = f"{source}:{number}"
        if key == "privatekey":
            private_key = PrivateKey.parse(value, f"{where}: PrivateKey")
        elif key == "address":
            for item in _list(value):
                refuse_zone(item, f"{where}: Address")
                try:
                    iface = ip_interface(item)
                except ValueError:
                    raise ValidationError(
                        f"{where}: Address {quote(item)} is not an IP address"
                    ) from None
                assert isinstance(iface, IPv4Interface | IPv6Interface)
                addresses.append(iface)
        elif key == "listenport":
            listen_port = _int(value, f"{where}: ListenPort", 1, 65535)
        elif key == "mtu":
            mtu = _int(value, f"{where}: MTU", 68, 65535)
        else:
            extra.append((key, value))
    return InterfaceSection(private_key, tuple(addresses), listen_port, mtu, tuple(extra))


def _peer(section: _Section, source: str) -> PeerSection:
    public_key = None
    endpoint = None
    allowed: list[IPNetwork] = []
    keepalive = None
    extra: list[tuple[str, str]] = []
    for key, value, number in section.items:
        where = f"{source}:{number}"
        if key == "publickey":
            public_key = PublicKey.parse(value, f"{where}: PublicKey")
        elif key == "endpoint":
            endpoint = Endpoint.parse(value, f"{where}: Endpoint")
            if endpoint.port is None:
                raise ValidationError(
                    f"{where}: Endpoint {quote(value)} has no port", "wg(8) needs HOST:PORT here"
                )
        elif key == "allowedips":
            for item in _list(value):
                refuse_zone(item, f"{where}: AllowedIPs")
                try:
                    allowed.append(ip_network(item, strict=False))
                except ValueError:
                    raise ValidationError(
                        f"{where}: AllowedIPs {quote(item)} is not a network"
                    ) from None
        elif key == "persistentkeepalive":
            keepalive = (
                0 if value == "off" else _int(value, f"{where}: PersistentKeepalive", 0, 65535)
            )
        else:
            extra.append((key, value))
    if public_key is None:
        raise ValidationError(f"{source}:{section.line}: [Peer] without a PublicKey")
    return PeerSection(
        public_key,
        endpoint,
        tuple(allowed),
        keepalive or None,
        section.comment,
        section.line,
        tuple(extra),
    )


def parse(text: str, source: str = "<config>") -> WgQuickConfig:
    """Parse a wg-quick file; errors name ``source`` and the line."""
    sections, managed = _sections(text, source)
    interfaces = [s for s in sections if s.kind == "interface"]
    if len(interfaces) != 1:
        raise ValidationError(
            f"{source}: expected one [Interface] section, found {len(interfaces)}",
            "a wg-quick file has exactly one [Interface] section",
        )
    peers = tuple(_peer(s, source) for s in sections if s.kind == "peer")
    return WgQuickConfig(_interface(interfaces[0], source), peers, managed)
