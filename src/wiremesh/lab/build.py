"""``lab up``: create a lab, writing the intent log before every step, and roll back on failure."""

from __future__ import annotations

import contextlib
import subprocess
import time
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path

from wiremesh.errors import OperationError
from wiremesh.lab import host as hostmod
from wiremesh.lab import layout, nat, network, procs, sshkeys, sysctl, topology
from wiremesh.lab.claim import check_directory, claim_machine
from wiremesh.lab.inventory import INVENTORY, write_inventory
from wiremesh.lab.lab import Checkpoint, Progress
from wiremesh.lab.prereq import check_prerequisites
from wiremesh.lab.spec import LabSpec
from wiremesh.lab.state import HostState, LabState, MachineRecord
from wiremesh.lab.teardown import release_machine, teardown

READY_TIMEOUT = 60.0
"""Seconds for every host to have sshd listening (50 hosts need about 3 here)."""


def build(
    directory: Path,
    spec: LabSpec,
    *,
    wait: float = 0.0,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
) -> tuple[LabState, dict[str, subprocess.Popen[bytes]]]:
    """Create the lab ``spec`` describes; returns its state and the ``unshare`` processes (children of
    the caller)."""
    check_prerequisites(nat=bool(spec.nats))
    directory = check_directory(directory)
    net = network.lab_network(topology.plan_lab(spec))
    names = [*net.links, *(ns.name for ns in net.namespaces)]
    # The root namespace gets addresses in these, so the machine must not route them already.
    ours: list[IPv4Network | IPv6Network] = [layout.UNDERLAY]
    if spec.ipv6:
        ours.append(layout.UNDERLAY6)
    with claim_machine(directory, wait, names, ours) as record:
        state = LabState(dir=directory, hosts_wanted=spec.total, spec=spec)
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
    plan = topology.plan_lab(state.topology)
    net = network.lab_network(plan)
    total = len(plan.hosts)

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
        HostState(name=h.name, index=h.index, netns=h.netns, underlay_ip=str(h.underlay.ip))
        for h in plan.hosts
    ]
    state.save()
    network.run_batch(net.root_batch())
    checkpoint("network")

    if plan.routers:
        progress("configuring NAT routers", 0, total)
    for r in plan.routers:
        # Their nftables/iptables rules and ip_forward live in their own netns and die with it.
        nat.setup_router(r, net.namespace_batch(r.netns))
    checkpoint("routers")

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
    for h in plan.hosts:
        host_keys[h.name] = sshkeys.generate_host_key()
        hostmod.prepare_host_dir(
            hosts_dir / h.name,
            name=h.name,
            sshd_config=sshkeys.render_sshd_config(h.name, h.listen),
            host_key=host_keys[h.name],
            authorized_key=public,
            net_batch=net.namespace_batch(h.netns),
        )

    for i, h in enumerate(plan.hosts, 1):
        progress("starting hosts", i - 1, total)
        proc = hostmod.launch(h.netns, init, h.name, hosts_dir / h.name)
        launchers[h.name] = proc
        state.host(h.name).launcher = procs.ref(proc.pid)
        state.save()
        checkpoint(f"host:{h.name}")

    _wait_ready(state, launchers, progress)
    checkpoint("ready")

    progress("collecting host keys", 0, total)
    presented = _collect_host_keys(plan)
    ssh_hosts = []
    for h in plan.hosts:
        key = presented[sshkeys.known_host(h.ssh_address, h.ssh_port)]
        if sshkeys.key_body(key) != sshkeys.key_body(host_keys[h.name].public):
            raise OperationError(
                f"{h.name} presents host key {key}, not the one generated for it",
                hint="something else answers on its address; check `ip addr` and `ss -ltn`",
            )
        ssh_hosts.append(
            sshkeys.SshHost(alias=h.name, address=h.ssh_address, host_key=key, port=h.ssh_port)
        )
    for name in (sshkeys.KNOWN_HOSTS, sshkeys.SSH_CONFIG, INVENTORY):
        state.add_file(name)
    state.save()
    (directory / sshkeys.KNOWN_HOSTS).write_text(sshkeys.render_known_hosts(ssh_hosts))
    (directory / sshkeys.SSH_CONFIG).write_text(sshkeys.render_ssh_config(ssh_hosts, directory))
    write_inventory(directory / INVENTORY, plan, sshkeys.SSH_CONFIG)
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


def _collect_host_keys(plan: topology.LabPlan) -> dict[str, str]:
    """The host keys the hosts' sshd present, keyed by :func:`sshkeys.known_host`, retried briefly.

    ssh-keyscan goes where ssh will go: a host's public address, or its router's forwarded port.
    """
    wanted = {sshkeys.known_host(h.ssh_address, h.ssh_port): h for h in plan.hosts}
    found: dict[str, str] = {}
    for _ in range(5):
        todo = [(h.ssh_address, h.ssh_port) for k, h in wanted.items() if k not in found]
        if not todo:
            break
        found.update(sshkeys.keyscan(todo))
        time.sleep(0.05 if len(found) < len(wanted) else 0)
    missing = [h.name for k, h in wanted.items() if k not in found]
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
