"""Emulated hosts in namespaces, with real WireGuard and real SSH (``wiremesh lab``, and the tests).

The API, independent of the CLI::

    lab = Lab.up(Path(".wiremesh-lab"), hosts=3)   # lab1..lab3 on 198.51.100.11..13
    # or: 1 public host, 2 hosts in site "a", 2 behind NAT router "home", lab2's links at MTU 1280
    lab = Lab.up(Path("x"), 1, sites={"a": 2}, nats={"home": 2}, underlay_mtu={"lab2": 1280})
    lab.exec("lab1", ["wg", "show"])              # inside lab1's namespaces
    subprocess.run(lab.ssh_argv("lab2", ["hostname"]))
    lab.down()                                     # or Lab.open(dir).down(), or down_dir(dir)

A host has its own network, mount, UTS and PID namespaces, its own sshd and private /etc/wireguard,
/etc/ssh, /run, /root and /tmp, with /etc and /var/lib as overlays. See design.md section 4.
"""

# The names below are imported on first use (PEP 562): the CLI reads a few constants of the lab at
# start-up, and every wiremesh command should not pay for importing the whole lab.
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wiremesh.lab.lab import Checkpoint, Lab, LabCommandError, Progress, down_dir
    from wiremesh.lab.layout import MAX_HOSTS, MIN_HOSTS, UNDERLAY
    from wiremesh.lab.parts import LabHost, LabRouter, LabSite
    from wiremesh.lab.spec import Group, LabSpec
    from wiremesh.lab.state import MACHINE_DIR, MachineRecord

_WHERE = {
    "Checkpoint": "lab",
    "Lab": "lab",
    "LabCommandError": "lab",
    "Progress": "lab",
    "down_dir": "lab",
    "MAX_HOSTS": "layout",
    "MIN_HOSTS": "layout",
    "UNDERLAY": "layout",
    "LabHost": "parts",
    "LabRouter": "parts",
    "LabSite": "parts",
    "Group": "spec",
    "LabSpec": "spec",
    "MACHINE_DIR": "state",
    "MachineRecord": "state",
}


def __getattr__(name: str) -> object:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'wiremesh.lab' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"wiremesh.lab.{module}"), name)


__all__ = [
    "MACHINE_DIR",
    "MAX_HOSTS",
    "MIN_HOSTS",
    "UNDERLAY",
    "Checkpoint",
    "Group",
    "Lab",
    "LabCommandError",
    "LabHost",
    "LabRouter",
    "LabSite",
    "LabSpec",
    "MachineRecord",
    "Progress",
    "down_dir",
]
