"""Claiming the machine for one lab, and the checks before anything is made.

Only one lab runs on a machine (all labs share 198.51.100.0/24 and the kernel object names), so ``lab up``
holds the machine lock while it writes a fresh machine record, after checking that the lab directory can
hold a lab and that nothing of a lab's names exists already.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterable, Iterator
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from wiremesh.errors import OperationError, ValidationError
from wiremesh.lab import layout, network, procs, sshkeys
from wiremesh.lab.inventory import INVENTORY
from wiremesh.lab.state import STATE_FILE, LabState, MachineRecord, machine_lock
from wiremesh.lab.teardown import release_machine

OUR_FILES = (
    *(STATE_FILE, sshkeys.IDENTITY, f"{sshkeys.IDENTITY}.pub", sshkeys.KNOWN_HOSTS),
    *(sshkeys.SSH_CONFIG, INVENTORY, "hosts"),
)
"""Names ``lab up`` creates in DIR; it refuses a DIR where one of them exists already."""

FORBIDDEN_PARENTS = ("/etc", "/var/lib", "/proc", "/sys", "/dev")
"""Hosts overlay /etc and /var/lib, so their upper directories cannot be inside them."""

_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._+@/=-]*$")


def check_directory(directory: Path) -> Path:
    """The absolute lab directory, or :class:`ValidationError` if it cannot hold a lab."""
    directory = directory.absolute()
    text = str(directory)
    if not _SAFE_PATH.match(text):
        # The path goes into mount options (',' and ':' separate them) and into ssh_config.
        raise ValidationError(
            f"the lab directory {text!r} contains characters the lab cannot use",
            hint="choose a --dir made of letters, digits and ._+@=-/ only",
        )
    for parent in FORBIDDEN_PARENTS:
        if text == parent or text.startswith(parent + "/"):
            raise ValidationError(
                f"the lab directory cannot be under {parent}", hint="choose another --dir"
            )
    if LabState.exists(directory):
        state = LabState.load(directory)
        raise ValidationError(
            f"{directory} already holds a lab ({state.hosts_wanted} hosts, {state.status}, "
            f"created {state.created})",
            hint=f"take it down first: wiremesh lab down --dir {directory}; or choose another --dir",
        )
    clashes = [n for n in OUR_FILES if (directory / n).exists()]
    if clashes:
        raise ValidationError(
            f"{directory} already has {', '.join(clashes)}; lab up will not overwrite them",
            hint="choose an empty or new --dir",
        )
    return directory


@contextlib.contextmanager
def claim_machine(
    directory: Path,
    wait: float,
    names: Iterable[str],
    networks: Iterable[IPv4Network | IPv6Network],
) -> Iterator[MachineRecord]:
    """Hold the machine lock with a fresh machine record for ``directory``; fail if another lab runs."""
    deadline = time.monotonic() + wait
    while True:
        with machine_lock():
            record = MachineRecord.load()
            if record is not None and (
                record.stale or record.dir == directory or not LabState.exists(record.dir)
            ):
                # Left over from an earlier boot, or from an `up` that died before its first step.
                release_machine(record, record.dir)
                record = MachineRecord.load()
            if record is None:
                check_directory(directory)  # again, under the lock
                check_no_strays(names, networks)
                fresh = MachineRecord(
                    dir=directory, created_netns_dir=not network.NETNS_DIR.exists()
                )
                fresh.save()
                yield fresh
                return
        assert record is not None
        if time.monotonic() >= deadline or not _owner_alive(record.dir):
            raise OperationError(
                f"another lab runs on this machine, in {record.dir} (only one lab can run at a time)",
                hint=f"take it down first: wiremesh lab down --dir {record.dir}",
            )
        time.sleep(0.5)


def _owner_alive(directory: Path) -> bool:
    """True while the process that made the lab in ``directory`` runs (a test that will take it down).

    Only then is waiting for that lab worth it; a lab made by `wiremesh lab up`, or by a crashed
    process, stays until someone runs `lab down`.
    """
    try:
        owner = LabState.load(directory).owner
    except ValidationError:
        return False
    return owner is not None and procs.is_alive(owner)


def check_no_strays(
    wanted: Iterable[str], networks: Iterable[IPv4Network | IPv6Network] = (layout.UNDERLAY,)
) -> None:
    """Refuse if a link or netns with one of the names the lab will create exists already, or if the
    machine routes one of the ``networks`` the root namespace will get an address in."""
    wanted = set(wanted)
    links = network.existing_links() & wanted
    namespaces = network.existing_netns() & wanted
    if links or namespaces:
        cmds = [
            f"ip netns pids {n} | xargs -r kill -9; ip netns del {n}" for n in sorted(namespaces)
        ]
        cmds += [f"ip link del {n}" for n in sorted(links)]
        raise OperationError(
            "lab links or namespaces exist that no lab records: "
            + ", ".join(sorted(links | namespaces)),
            hint="if no lab runs, remove them: " + "; ".join(cmds),
        )
    for net in networks:
        overlaps = network.routes_overlapping(str(net))
        if overlaps:
            raise OperationError(
                f"this machine already routes {net}: {'; '.join(overlaps)}",
                hint=f"the lab needs {net} for itself; remove that route or address",
            )
