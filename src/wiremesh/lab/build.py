"""``lab up``: create a lab, writing the intent log before every step, and roll back on failure."""

from __future__ import annotations

import contextlib
import subprocess
import time
from ipaddress import IPv4Interface, IPv4Network, IPv6Interface, IPv6Network
from pathlib import Path

from wiremesh.errors import OperationError
from wiremesh.lab import host as hostmod
from wiremesh.lab import layout, nat, network, procs, sshkeys, sysctl, topology
from wiremesh.lab import vm as vmmod
from wiremesh.lab.claim import check_directory, claim_machine
from wiremesh.lab.image import Image
from wiremesh.lab.inventory import INVENTORY, write_inventory
from wiremesh.lab.lab import Checkpoint, Progress
from wiremesh.lab.prereq import check_prerequisites
from wiremesh.lab.spec import LabSpec
from wiremesh.lab.state import HostState, LabState, MachineRecord, VmState
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
    """Create the lab ``spec`` describes; returns its state and the ``unshare`` and QEMU processes
    (children of the caller).

    With VMs, their image is built first if the cache lacks it (before the machine is claimed: a
    build takes a minute or two, and needs no lab).
    """
    check_prerequisites(nat=bool(spec.nats))
    image = _vm_image(progress or _no_progress) if spec.vms else None
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
            _build(
                state,
                record,
                launchers,
                progress or _no_progress,
                checkpoint or _no_checkpoint,
                image,
            )
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


def _vm_image(progress: Progress) -> Image:
    from wiremesh.lab import image

    found = image.find()
    image.check_vm_programs(build=found is None)
    if found is not None:
        return found
    return image.build(
        progress=lambda phase: progress(f"building the VM image (once): {phase}", 0, 1)
    )


def _no_checkpoint(step: str) -> None:
    pass


def _build(
    state: LabState,
    record: MachineRecord,
    launchers: dict[str, subprocess.Popen[bytes]],
    progress: Progress,
    checkpoint: Checkpoint,
    image: Image | None,
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
    state.taps = [t.name for t in net.taps]
    state.hosts = [
        HostState(name=h.name, index=h.index, netns=h.netns, underlay_ip=str(h.underlay.ip))
        for h in plan.namespace_hosts
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
    host_keys = {h.name: sshkeys.generate_host_key() for h in plan.hosts}
    for h in plan.namespace_hosts:
        hostmod.prepare_host_dir(
            hosts_dir / h.name,
            name=h.name,
            sshd_config=sshkeys.render_sshd_config(h.name, h.listen),
            host_key=host_keys[h.name],
            authorized_key=public,
            net_batch=net.namespace_batch(h.netns),
        )

    if plan.vms:
        assert image is not None
        _prepare_vms(state, plan, image, public, host_keys)

    for i, h in enumerate(plan.namespace_hosts, 1):
        progress("starting hosts", i - 1, total)
        proc = hostmod.launch(h.netns, init, h.name, hosts_dir / h.name)
        launchers[h.name] = proc
        state.host(h.name).launcher = procs.ref(proc.pid)
        state.save()
        checkpoint(f"host:{h.name}")

    if plan.vms:
        assert image is not None
        _boot_vms(state, plan, image, launchers, progress, checkpoint)
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


def _prepare_vms(
    state: LabState,
    plan: topology.LabPlan,
    image: Image,
    authorized_key: str,
    host_keys: dict[str, sshkeys.HostKey],
) -> None:
    """Record every VM, then make its directory, overlay and identity disk."""
    directory = state.dir
    state.add_file(vmmod.VM_DIR)
    for h in plan.vms:
        files = vmmod.paths(directory, h.name)
        state.vms.append(
            VmState(
                name=h.name,
                index=h.index,
                tap=h.tap,
                underlay_ip=str(h.underlay.ip),
                dir=str(files.dir.relative_to(directory)),
                qmp=str(files.qmp),
                control=str(files.control),
                image=image.key,
            )
        )
    state.save()
    vmmod.RUN_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    (directory / vmmod.VM_DIR).mkdir(mode=0o700)
    for h in plan.vms:
        files = vmmod.paths(directory, h.name)
        files.dir.mkdir(mode=0o700)
        vmmod.create_overlay(image, files.disk)
        addresses: list[IPv4Interface | IPv6Interface] = [h.underlay]
        if h.public6 is not None:
            addresses.append(h.public6)
        archive = vmmod.identity_archive(
            name=h.name,
            mac=vmmod.mac_address(h.index),
            addresses=addresses,
            mtu=h.mtu,
            host_key=host_keys[h.name],
            authorized_key=authorized_key,
        )
        sshkeys.write_private(files.identity, archive)


def _boot_vms(
    state: LabState,
    plan: topology.LabPlan,
    image: Image,
    launchers: dict[str, subprocess.Popen[bytes]],
    progress: Progress,
    checkpoint: Checkpoint,
) -> None:
    """Start the VMs, at most :data:`~wiremesh.lab.vm.MAX_BOOTING` booting at once, and wait until
    each one's sshd answers."""
    pending = list(plan.vms)
    booting: dict[str, tuple[topology.HostPlan, float]] = {}
    total, done = len(pending), 0
    progress("booting VMs", 0, total)
    while pending or booting:
        while pending and len(booting) < vmmod.MAX_BOOTING:
            h = pending.pop(0)
            files = vmmod.paths(state.dir, h.name)
            argv = vmmod.qemu_argv(
                name=h.name,
                image=image,
                files=files,
                tap=h.tap,
                mac=vmmod.mac_address(h.index),
                memory=plan.spec.vm_memory,
            )
            proc = vmmod.launch(argv, files)
            launchers[h.name] = proc
            checkpoint(
                f"qemu:{h.name}"
            )  # started, not recorded yet: teardown finds it by its files
            state.vm(h.name).qemu = procs.ref(proc.pid)
            state.save()
            checkpoint(f"vm:{h.name}")
            booting[h.name] = (h, time.monotonic())
        for name, (h, started) in list(booting.items()):
            files = vmmod.paths(state.dir, name)
            proc = launchers[name]
            if proc.poll() is not None:
                raise OperationError(
                    f"VM {name} stopped while starting (QEMU exited {proc.returncode}): "
                    + vmmod.tail(files.qemu_log),
                    hint=f"its console: {files.console} (the lab was removed again)",
                )
            if vmmod.sshd_answers(h.ssh_address, h.ssh_port, timeout=0.5):
                del booting[name]
                done += 1
                progress(
                    f"booting VMs: {name} answers after {time.monotonic() - started:.1f} s",
                    done,
                    total,
                )
            elif time.monotonic() - started > vmmod.READY_TIMEOUT:
                raise OperationError(
                    f"VM {name} did not answer ssh within {vmmod.READY_TIMEOUT:g} s; the end of "
                    f"its console:\n{vmmod.tail(files.console)}",
                    hint="the machine may be overloaded (QEMU emulates the CPU); try fewer --vms",
                )
        if booting:
            time.sleep(0.5)


def _wait_ready(
    state: LabState, launchers: dict[str, subprocess.Popen[bytes]], progress: Progress
) -> None:
    """Wait until every namespace host's PID 1 is known (and recorded) and its sshd listens."""
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
