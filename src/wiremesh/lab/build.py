"""``lab up``: create a lab, writing the intent log before every step, and roll back on failure."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterable, Iterator
from ipaddress import IPv4Address
from pathlib import Path

from wiremesh.errors import OperationError, ValidationError
from wiremesh.lab import host as hostmod
from wiremesh.lab import layout, network, procs, sshkeys, sysctl
from wiremesh.lab.inventory import INVENTORY, write_inventory
from wiremesh.lab.lab import Checkpoint, Progress
from wiremesh.lab.prereq import check_prerequisites
from wiremesh.lab.state import STATE_FILE, HostState, LabState, MachineRecord, machine_lock
from wiremesh.lab.teardown import release_machine, teardown

READY_TIMEOUT = 60.0
"""Seconds for every host to have sshd listening (50 hosts need about 3 here)."""

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
def _claim_machine(directory: Path, wait: float, names: Iterable[str]) -> Iterator[MachineRecord]:
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
                _check_no_strays(names)
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


def _check_no_strays(wanted: Iterable[str]) -> None:
    """Refuse if a link or netns with one of the names the lab will create exists already."""
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
    overlaps = network.routes_overlapping(str(layout.UNDERLAY))
    if overlaps:
        raise OperationError(
            f"this machine already routes {layout.UNDERLAY}: {'; '.join(overlaps)}",
            hint="the lab needs 198.51.100.0/24 for itself; remove that route or address",
        )


def build(
    directory: Path,
    hosts: int,
    *,
    wait: float = 0.0,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
) -> tuple[LabState, dict[str, subprocess.Popen[bytes]]]:
    """Create the lab; returns its state and the ``unshare`` processes (children of the caller)."""
    layout.check_host_count(hosts)
    check_prerequisites()
    directory = check_directory(directory)
    net = network.flat_network(layout.host_addresses(hosts))
    names = [*net.links, *(ns.name for ns in net.namespaces)]
    with _claim_machine(directory, wait, names) as record:
        state = LabState(dir=directory, hosts_wanted=hosts)
        launchers: dict[str, subprocess.Popen[bytes]] = {}
        try:
            _build(state, record, launchers, progress or _no_progress, checkpoint or _no_checkpoint)
        except BaseException as exc:
            problems = teardown(state, MachineRecord.load()) if state.path.exists() else []
            if not state.path.exists():
                release_machine(MachineRecord.load(), directory)
            for proc in launchers.values():
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            if problems:
                exc.add_note("cleanup after the failure left: " + "; ".join(problems))
            raise
    return state, launchers


def _no_progress(phase: str, done: int, total: int) -> None:
    pass


def _no_checkpoint(step: str) -> None:
    pass


def _build(
    state: LabState,
    record: MachineRecord,
    launchers: dict[str, subprocess.Popen[bytes]],
    progress: Progress,
    checkpoint: Checkpoint,
) -> None:
    directory = state.dir
    addresses = layout.host_addresses(state.hosts_wanted)
    net = network.flat_network(addresses)
    total = len(addresses)

    # The directory and the intent log come first: from here on, `lab down --dir DIR` can clean up.
    if not directory.exists():
        directory.mkdir(mode=0o700, parents=True)
        state.created_dir = True
    state.save()
    checkpoint("state")

    progress("raising kernel limits", 0, total)
    originals, raised = sysctl.raise_limits()
    state.sysctl = True
    state.save()
    record.sysctl_saved = originals
    record.save()  # originals are safe on disk before anything is changed
    sysctl.apply(raised)

    progress("creating the network", 0, total)
    state.bridges = [b.name for b in net.bridges]
    state.netns = [ns.name for ns in net.namespaces]
    state.veths = net.veths
    state.hosts = [
        HostState(name=a.name, index=a.index, netns=a.netns, underlay_ip=str(a.underlay_ip))
        for a in addresses
    ]
    state.save()
    network.run_batch(net.root_batch())
    checkpoint("network")

    progress("writing host files", 0, total)
    for name in (sshkeys.IDENTITY, f"{sshkeys.IDENTITY}.pub", "hosts"):
        state.add_file(name)
    state.save()
    hosts_dir = directory / "hosts"
    hosts_dir.mkdir(mode=0o700)
    public = sshkeys.generate_identity(directory / sshkeys.IDENTITY, "wiremesh-lab")
    init = hosts_dir / hostmod.INIT_FILE
    init.write_text(hostmod.INIT_SCRIPT)
    host_keys = {}
    for a in addresses:
        host_keys[a.name] = sshkeys.generate_host_key()
        hostmod.prepare_host_dir(
            hosts_dir / a.name,
            name=a.name,
            sshd_config=sshkeys.render_sshd_config(a.name, [a.underlay_ip]),
            host_key=host_keys[a.name],
            authorized_key=public,
            net_batch=net.namespace_batch(a.netns),
        )

    for i, a in enumerate(addresses, 1):
        progress("starting hosts", i - 1, total)
        proc = hostmod.launch(a.netns, init, a.name, hosts_dir / a.name)
        launchers[a.name] = proc
        state.host(a.name).launcher = procs.ref(proc.pid)
        state.save()
        checkpoint(f"host:{a.name}")

    _wait_ready(state, launchers, progress)
    checkpoint("ready")

    progress("collecting host keys", 0, total)
    presented = _collect_host_keys(state)
    ssh_hosts = []
    for a in addresses:
        key = presented[str(a.underlay_ip)]
        if sshkeys.key_body(key) != sshkeys.key_body(host_keys[a.name].public):
            raise OperationError(
                f"{a.name} presents host key {key}, not the one generated for it",
                hint="something else answers on its address; check `ip addr` and `ss -ltn`",
            )
        ssh_hosts.append(sshkeys.SshHost(alias=a.name, address=a.underlay_ip, host_key=key))
    for name in (sshkeys.KNOWN_HOSTS, sshkeys.SSH_CONFIG, INVENTORY):
        state.add_file(name)
    state.save()
    (directory / sshkeys.KNOWN_HOSTS).write_text(sshkeys.render_known_hosts(ssh_hosts))
    (directory / sshkeys.SSH_CONFIG).write_text(sshkeys.render_ssh_config(ssh_hosts, directory))
    write_inventory(directory / INVENTORY, addresses, sshkeys.SSH_CONFIG)
    checkpoint("files")

    state.status = "up"
    state.save()
    progress("done", total, total)


def _wait_ready(
    state: LabState, launchers: dict[str, subprocess.Popen[bytes]], progress: Progress
) -> None:
    """Wait until every host's PID 1 is known (and recorded) and its sshd listens."""
    total = len(state.hosts)
    pending = [h.name for h in state.hosts]
    deadline = time.monotonic() + READY_TIMEOUT
    progress("waiting for sshd", 0, total)
    while pending:
        for name in list(pending):
            h = state.host(name)
            proc = launchers[name]
            if proc.poll() is not None:
                raise OperationError(
                    f"lab host {name} stopped while starting (exit {proc.returncode}): "
                    + _tail(state.dir / "hosts" / name / hostmod.CONSOLE_LOG),
                    hint="see the message above; the lab was removed again",
                )
            if h.init is None:
                pid = hostmod.find_init(proc.pid)
                if pid is None:
                    continue
                h.init = procs.ref(pid)
                state.save()
            if h.init is not None and hostmod.sshd_pid(h.init.pid) is not None:
                pending.remove(name)
                progress("waiting for sshd", total - len(pending), total)
        if not pending:
            break
        if time.monotonic() > deadline:
            name = pending[0]
            init = state.host(name).init
            log = hostmod.sshd_log(init.pid) if init else ""
            raise OperationError(
                f"sshd did not come up on {', '.join(pending)} within {READY_TIMEOUT:g} s"
                + (f"; sshd log of {name}: {log}" if log else ""),
                hint="the machine may be overloaded; try fewer --hosts",
            )
        time.sleep(0.01)


def _collect_host_keys(state: LabState) -> dict[str, str]:
    """The host keys the hosts' sshd present (ssh-keyscan over the underlay), retried briefly."""
    wanted = [h.underlay_ip for h in state.hosts]
    found: dict[str, str] = {}
    for _ in range(5):
        missing = [a for a in wanted if a not in found]
        if not missing:
            break
        found.update(sshkeys.keyscan([IPv4Address(a) for a in missing]))
        time.sleep(0.05 if len(found) < len(wanted) else 0)
    missing = [h.name for h in state.hosts if h.underlay_ip not in found]
    if missing:
        raise OperationError(
            f"could not read the host key of {', '.join(missing)} with ssh-keyscan",
            hint="check that sshd runs in them: wiremesh lab exec <host> -- ps -ef",
        )
    return found


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text()[-limit:].strip() or "(no output)"
    except OSError:
        return "(no console log)"
