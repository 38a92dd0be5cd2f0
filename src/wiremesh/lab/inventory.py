"""The inventory ``lab up`` writes into DIR: the lab as wiremesh sees it, built with the core inventory API.

It describes what was built: every host with its overlay address and ``ssh = "root@labN"`` (an alias of
the lab's ssh_config); public and site hosts with their public endpoint (IPv6 with ``--ipv6``); site
hosts with ``site`` and their ``private_endpoint``; NAT hosts with no endpoint at all (nothing outside
can reach them) and nothing about their LAN; and, when there are NAT hosts, a ``relay``.
"""

from __future__ import annotations

from pathlib import Path

from wiremesh.lab import layout
from wiremesh.lab.layout import OVERLAY6_CIDR
from wiremesh.lab.topology import HostPlan, LabPlan
from wiremesh.model.endpoint import Endpoint, SshTarget
from wiremesh.model.inventory import Inventory, MeshSettings, Node
from wiremesh.model.names import NodeName
from wiremesh.store.inventory_file import InventoryFile

INVENTORY = "wiremesh.toml"

COMMENT = "wiremesh inventory written by `wiremesh lab up`; edit freely."

MESH_NAME = "lab"
MTU = 1420
KEEPALIVE = 25


def lab_inventory(plan: LabPlan, ssh_config: str) -> Inventory:
    """The inventory of the lab in ``plan``: mesh ``lab`` on 10.77.0.0/24 (and fd77::/64 with IPv6)."""
    relay = plan.relay
    mesh = MeshSettings(
        cidr=layout.OVERLAY_CIDR,
        name=MESH_NAME,
        interface="wg0",
        cidr6=OVERLAY6_CIDR if plan.spec.ipv6 else None,
        port=layout.WG_PORT,
        mtu=MTU,
        keepalive=KEEPALIVE,
        ssh_config=ssh_config,
        relay=NodeName(relay) if relay else None,
    )
    return Inventory(mesh, nodes=tuple(_node(h) for h in plan.hosts))


def _node(host: HostPlan) -> Node:
    endpoint = None
    if host.public6 is not None:
        endpoint = Endpoint(host.public6.ip, layout.WG_PORT)
    elif host.public is not None:
        endpoint = Endpoint(host.public.ip, layout.WG_PORT)
    site = host.group if host.role == "site" else None
    private = Endpoint(host.private.ip) if site and host.private is not None else None
    return Node(
        name=NodeName(host.name),
        address=host.overlay,
        address6=host.overlay6,
        endpoint=endpoint,
        ssh=SshTarget(host.name, user="root"),
        site=site,
        private_endpoint=private,
    )


def write_inventory(path: Path, plan: LabPlan, ssh_config: str) -> None:
    """Write the lab's inventory to ``path`` (validated by the store; never overwrites a file)."""
    InventoryFile(path).create(lab_inventory(plan, ssh_config), COMMENT)
