"""A small observed mesh for the metrics tests: four nodes a, b, c, d (10.0.0.1-4).

- a reaches b directly (fresh handshake; b's in-use endpoint differs from a's config file), c through
  b (a routes c's address to b; b has a fresh handshake with c), d not yet (idle: no traffic);
- b reaches a and c directly, d is idle; c reaches a through b, b directly, d idle;
- d's host cannot be read.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Interface, ip_network

from tests.helpers import keys
from wiremesh.model.device import ObservedDevice, ObservedPeer, PeerStats
from wiremesh.model.endpoint import Endpoint
from wiremesh.model.host import ManagedConfig, ObservedHost, OsInfo
from wiremesh.model.inventory import Inventory, MeshSettings, Node
from wiremesh.model.keys import PublicKey
from wiremesh.model.names import NodeName
from wiremesh.remote.ssh import HostError

NAMES = ("a", "b", "c", "d")
KEYS: list[PublicKey] = [k.public_key() for k in keys(4)]
NOW = 1_800_000_000
INDEX = {n: i for i, n in enumerate(NAMES)}


def inventory() -> Inventory:
    """The inventory of the four nodes (all with a public endpoint and a key)."""
    nodes = tuple(
        Node(
            NodeName(n),
            IPv4Address(f"10.0.0.{i + 1}"),
            endpoint=Endpoint.parse(f"198.51.100.{11 + i}:51820"),
            public_key=KEYS[i],
        )
        for i, n in enumerate(NAMES)
    )
    return Inventory(MeshSettings(ip_network("10.0.0.0/24"), name="m"), nodes)  # type: ignore[arg-type]


def peer(
    target: str,
    handshake_ago: int | None = None,
    routes: tuple[str, ...] | None = None,
    endpoint: str | None = None,
    rx: int = 0,
    tx: int = 0,
) -> ObservedPeer:
    """``target``'s entry: ``routes`` are the names whose addresses it carries (default itself)."""
    i = INDEX[target]
    carried = (target,) if routes is None else routes
    return ObservedPeer(
        KEYS[i],
        Endpoint.parse(endpoint or f"198.51.100.{11 + i}:51820"),
        tuple(ip_network(f"10.0.0.{INDEX[n] + 1}/32") for n in carried),
        None,
        PeerStats(NOW - handshake_ago if handshake_ago is not None else 0, rx, tx),
    )


def host(name: str, peers: list[ObservedPeer], backend_kernel: bool = False) -> ObservedHost:
    """A reachable host whose interface is up with ``peers``; its config names every peer's
    endpoint (its public one)."""
    i = INDEX[name]
    device = ObservedDevice(
        "wg0", KEYS[i], 51820, tuple(peers), (IPv4Interface(f"10.0.0.{i + 1}/24"),), 1420
    )
    configured = {KEYS[j]: Endpoint.parse(f"198.51.100.{11 + j}:51820") for j in range(4) if j != i}
    return ObservedHost(
        tools=frozenset({"wg", "wg-quick", "ip", "wireguard-go"}),
        os=OsInfo("debian"),
        kernel_module=backend_kernel,
        systemd=False,
        service_enabled=False,
        now=NOW,
        public_key=KEYS[i],
        config=ManagedConfig(True, "# wiremesh: managed file\n", configured),
        device=device,
        link_up=True,
    )


def observed(
    error: str = "cannot connect to root@198.51.100.14:22: timed out after 15 s",
) -> dict[str, ObservedHost | HostError]:
    """The four hosts as read (d failing with ``error``)."""
    return {
        "a": host(
            "a",
            [
                peer("b", 3, ("b", "c"), endpoint="198.51.100.12:40000", rx=900, tx=800),
                peer("c", None, ()),
                peer("d"),
            ],
        ),
        "b": host("b", [peer("a", 3, rx=5, tx=6), peer("c", 7), peer("d")], backend_kernel=True),
        "c": host("c", [peer("a", None, ()), peer("b", 7, ("b", "a")), peer("d")]),
        "d": HostError("d", error),
    }
