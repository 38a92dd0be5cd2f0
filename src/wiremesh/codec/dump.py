"""``wg show <iface> dump`` parsing (wg(8), "dump": tab-separated, one line per peer).

The interface line is ``private-key public-key listen-port fwmark``; each peer line is ``public-key
preshared-key endpoint allowed-ips latest-handshake transfer-rx transfer-tx persistent-keepalive``.
The observe script replaces the private key, and any preshared key that is set, with ``(hidden)`` on
the host, so they never reach the operator; a preshared key that is not set stays ``(none)``.
"""

from __future__ import annotations

from ipaddress import ip_network

from wiremesh.errors import OperationError, ValidationError
from wiremesh.model.addressing import IPNetwork
from wiremesh.model.device import ObservedDevice, ObservedPeer, PeerStats
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.keys import PublicKey


def _endpoint(text: str) -> Endpoint | None:
    return None if text == "(none)" else Endpoint.parse(text, "dump endpoint")


def _allowed(text: str) -> tuple[IPNetwork, ...]:
    if text == "(none)" or not text:
        return ()
    return tuple(ip_network(item, strict=False) for item in text.split(","))


def _keepalive(text: str) -> int | None:
    return None if text in ("off", "0") else int(text)


def parse_dump(name: str, text: str) -> ObservedDevice | None:
    """The device from a dump, or None when the text is empty (no such interface)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    try:
        head = lines[0].split("\t")
        public_key = None if head[1] == "(none)" else PublicKey.parse(head[1])
        listen_port = int(head[2]) if head[2] not in ("0", "(none)") else None
        peers = []
        for line in lines[1:]:
            f = line.split("\t")
            peers.append(
                ObservedPeer(
                    public_key=PublicKey.parse(f[0]),
                    endpoint=_endpoint(f[2]),
                    allowed_ips=_allowed(f[3]),
                    persistent_keepalive=_keepalive(f[7]),
                    stats=PeerStats(int(f[4]), int(f[5]), int(f[6])),
                    preshared_key=f[1] != "(none)",
                )
            )
    except (IndexError, ValueError, ValidationError) as exc:
        raise OperationError(f"cannot parse 'wg show {name} dump' output: {exc}") from None
    return ObservedDevice(name, public_key, listen_port, tuple(peers))
