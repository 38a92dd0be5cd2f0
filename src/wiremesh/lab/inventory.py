"""The inventory ``lab up`` writes into DIR (format version 1).

Kept to one function on purpose: the inventory format belongs to the core, and this will switch to the core
inventory API once it lands.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import tomlkit

from wiremesh.lab import layout

INVENTORY = "wiremesh.toml"


def render_inventory(hosts: Iterable[layout.HostAddress], ssh_config: str) -> str:
    """The inventory text: mesh ``lab`` on 10.77.0.0/24 with one ``[[node]]`` per lab host."""
    doc = tomlkit.document()
    doc.add(tomlkit.comment("wiremesh inventory written by `wiremesh lab up`; edit freely."))
    doc.add("version", 1)
    doc.add(tomlkit.nl())

    mesh = tomlkit.table()
    mesh.add("name", "lab")
    mesh.add("interface", "wg0")
    mesh.add("cidr", str(layout.OVERLAY_CIDR))
    mesh.add("port", layout.WG_PORT)
    mesh.add("mtu", 1420)
    mesh.add("keepalive", 25)
    ssh = tomlkit.item(ssh_config)
    ssh.comment("relative to this file's directory")
    ssh.trivia.comment_ws = "   "
    mesh.add("ssh_config", ssh)
    doc.add("mesh", mesh)

    nodes = tomlkit.aot()
    for h in hosts:
        node = tomlkit.table()
        node.add("name", h.name)
        node.add("address", str(h.overlay))
        node.add("endpoint", f"{h.underlay_ip}:{layout.WG_PORT}")
        node.add("ssh", f"root@{h.name}")
        nodes.append(node)
    doc.add("node", nodes)
    return tomlkit.dumps(doc)


def write_inventory(path: Path, hosts: Iterable[layout.HostAddress], ssh_config: str) -> None:
    """Write the inventory to ``path`` (see :func:`render_inventory`)."""
    path.write_text(render_inventory(hosts, ssh_config))
