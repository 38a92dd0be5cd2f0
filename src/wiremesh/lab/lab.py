"""The :class:`Lab`: bring emulated hosts up, use them, take them down.

``Lab.up`` writes the intent log before every resource it creates (see :mod:`wiremesh.lab.state`) and
rolls everything back if it fails; ``Lab.down`` (or ``wiremesh lab down``) removes what the log names,
also after a crash.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from ipaddress import IPv4Address
from pathlib import Path
from types import TracebackType

from wiremesh.errors import OperationError, ValidationError
from wiremesh.lab import host as hostmod
from wiremesh.lab import procs, topology
from wiremesh.lab import vm as vmmod
from wiremesh.lab.inventory import INVENTORY
from wiremesh.lab.parts import LabHost, LabRouter, LabSite
from wiremesh.lab.spec import Group, LabSpec, make_spec
from wiremesh.lab.sshkeys import IDENTITY, KNOWN_HOSTS, SSH_CONFIG
from wiremesh.lab.state import LabState, MachineRecord, VmState, machine_lock
from wiremesh.lab.teardown import teardown

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: called as ``up`` advances (for a progress bar)."""

Checkpoint = Callable[[str], None]
"""``checkpoint(step)``: called after each step of ``up`` ("state", "network", "routers", "host:lab2",
"ready", "files"; for VMs "qemu:lab3" just after QEMU started and "vm:lab3" once it is recorded).
Tests use it to inject a failure or a crash at a precise point."""


class LabCommandError(OperationError):
    """A command in a lab host failed: carries the host, the command, its exit code and output."""

    def __init__(
        self,
        host: str,
        argv: Sequence[str],
        returncode: int | None,
        stdout: str,
        stderr: str,
        timeout: float | None = None,
    ) -> None:
        what = f"timed out after {timeout:g} s" if timeout is not None else f"exited {returncode}"
        detail = stderr.strip() or stdout.strip()
        super().__init__(
            f"{host}: `{' '.join(argv)}` {what}" + (f": {detail[-2000:]}" if detail else ""),
            hint=f"try it by hand: wiremesh lab exec {host} -- {' '.join(argv)}",
        )
        self.host = host
        self.argv = list(argv)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr


class Lab:
    """Emulated hosts ``lab1..labN`` in namespaces, described by ``DIR/lab.json``.

    Use :meth:`up` to create one and :meth:`open` to attach to an existing one; :meth:`down` removes it.
    A ``Lab`` is also a context manager that takes the lab down on exit.
    """

    def __init__(
        self, state: LabState, launchers: Mapping[str, subprocess.Popen[bytes]] | None = None
    ) -> None:
        self._state = state
        self._launchers = dict(launchers or {})

    # --- paths and hosts ----------------------------------------------------------------------------

    @property
    def dir(self) -> Path:
        """The lab directory."""
        return self._state.dir

    @property
    def complete(self) -> bool:
        """True once ``up`` finished; False for a lab whose ``up`` crashed or still runs."""
        return self._state.status == "up"

    @property
    def inventory_path(self) -> Path:
        """``DIR/wiremesh.toml``: the ready inventory of the lab hosts."""
        return self.dir / INVENTORY

    @property
    def ssh_config_path(self) -> Path:
        """``DIR/ssh_config``: ``ssh -F <this> lab1`` works with strict host key checking."""
        return self.dir / SSH_CONFIG

    @property
    def known_hosts_path(self) -> Path:
        """``DIR/known_hosts``: the hosts' real host keys."""
        return self.dir / KNOWN_HOSTS

    @property
    def identity_path(self) -> Path:
        """``DIR/id_ed25519``: the SSH identity every lab host accepts for root."""
        return self.dir / IDENTITY

    @cached_property
    def plan(self) -> topology.LabPlan:
        """Names and addresses of everything in the lab (the pure description it was built from)."""
        return topology.plan_lab(self._state.topology)

    @property
    def spec(self) -> LabSpec:
        """What the lab was made of: public hosts, sites, NATs, IPv6, underlay MTUs."""
        return self._state.topology

    @property
    def hosts(self) -> list[LabHost]:
        """The hosts that were started (all of them, for a complete lab), in order: namespace hosts
        and VMs."""
        found = [
            self._lab_host(h.name, h.index, h.underlay_ip, h.netns, h.init.pid)
            for h in self._state.hosts
            if h.init is not None
        ]
        found += [
            self._lab_host(v.name, v.index, v.underlay_ip, None, v.qemu.pid, tap=v.tap)
            for v in self._state.vms
            if v.qemu is not None
        ]
        return sorted(found, key=lambda h: h.index)

    @property
    def vms(self) -> list[LabHost]:
        """The hosts that are VMs, in order."""
        return [h for h in self.hosts if h.kind == "vm"]

    def _lab_host(
        self,
        name: str,
        index: int,
        underlay: str,
        netns: str | None,
        pid: int,
        tap: str | None = None,
    ) -> LabHost:
        kind: topology.Kind = "vm" if tap is not None else "namespace"
        try:
            p = self.plan.host(name)
        except KeyError:  # a state that does not match its spec: show what the state says
            return LabHost(name, index, IPv4Address(underlay), netns, pid, kind=kind, tap=tap)
        return LabHost(
            name=name,
            index=index,
            underlay_ip=IPv4Address(underlay),
            netns=netns,
            pid=pid,
            role=p.role,
            group=p.group,
            public_ip=p.public.ip if p.public else None,
            private_ip=p.private.ip if p.private else None,
            underlay6=p.public6.ip if p.public6 else None,
            nat_ip=p.nat_ip,
            mtu=p.mtu or 1500,
            ssh_address=p.ssh_address,
            ssh_port=p.ssh_port,
            kind=kind,
            tap=tap,
        )

    @property
    def sites(self) -> list[LabSite]:
        """The lab's sites, in the order given."""
        return [LabSite(s.name, s.bridge, s.network) for s in self.plan.sites]

    @property
    def routers(self) -> list[LabRouter]:
        """The lab's NAT routers, in the order given."""
        return [
            LabRouter(
                name=r.name,
                netns=r.netns,
                wan_ip=r.wan.ip,
                lan=r.lan,
                lan_bridge=r.lan_bridge,
                ssh_ports={f.host: f.port for f in r.forwards},
            )
            for r in self.plan.routers
        ]

    def router(self, name: str) -> LabRouter:
        """The NAT router called ``name``."""
        for r in self.routers:
            if r.name == name:
                return r
        raise ValidationError(
            f"no NAT router {name!r} in the lab in {self.dir}",
            hint="its routers: " + (", ".join(r.name for r in self.routers) or "none"),
        )

    def host(self, name: str) -> LabHost:
        """The host called ``name``; :class:`ValidationError` naming the hosts if there is none."""
        for h in self.hosts:
            if h.name == name:
                return h
        names = ", ".join(h.name for h in self.hosts) or "none"
        raise ValidationError(
            f"no host {name!r} in the lab in {self.dir}", hint=f"the lab's hosts: {names}"
        )

    def is_running(self, name: str) -> bool:
        """True if the host's PID 1 (a VM's QEMU) still runs."""
        if self._is_vm(name):
            qemu = self._state.vm(name).qemu
            return qemu is not None and procs.is_alive(qemu)
        record = self._state.host(name)
        return record.init is not None and procs.is_alive(record.init)

    def _is_vm(self, name: str) -> bool:
        return any(v.name == name for v in self._state.vms)

    def _running(self, name: str) -> LabHost:
        h = self.host(name)
        if not self.is_running(name):
            what = "its QEMU process" if h.kind == "vm" else "its PID 1"
            raise OperationError(
                f"lab host {name} is not running ({what}, {h.pid}, is gone)",
                hint=f"recreate the lab: wiremesh lab down --dir {self.dir}; wiremesh lab up ...",
            )
        return h

    # --- commands in hosts --------------------------------------------------------------------------

    def exec_argv(self, name: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` inside host ``name``: in its namespaces (``nsenter``),
        or on a VM over ssh (one reused connection per VM; the remote shell gets ``argv`` quoted)."""
        h = self._running(name)
        if h.kind == "vm":
            return self.vm_ssh_argv(name, argv)
        return hostmod.nsenter_argv(h.pid, argv)

    def vm_ssh_argv(
        self, name: str, argv: Sequence[str] | None = None, *, tty: bool = False
    ) -> list[str]:
        """ssh to VM ``name``, running ``argv`` (quoted for the remote shell), or a login shell."""
        self._vm(name)
        command = ["--", shlex.join(argv)] if argv else []
        return [*self._vm_ssh(name), *(["-t"] if tty else []), name, *command]

    def _vm_ssh(self, name: str) -> list[str]:
        """ssh options for commands on VM ``name``: strict host keys (the lab's ssh_config) and a
        control master, since each new login costs about a second under emulation."""
        return [
            *("ssh", "-F", str(self.ssh_config_path), "-o", "BatchMode=yes"),
            *("-o", "ControlMaster=auto", "-o", f"ControlPath={self._state.vm(name).control}"),
            *("-o", "ControlPersist=120"),
        ]

    def exec(
        self,
        name: str,
        argv: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60.0,
        input: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in host ``name`` as root on its console (own namespaces, cwd /root, clean env).

        Raises :class:`LabCommandError` if it exits non-zero (with ``check``) or runs past ``timeout``;
        on timeout the command's whole process group is killed. A daemon it starts (wireguard-go, which
        detaches into its own session) keeps running, reparented to the host's PID 1. On a VM the
        command runs over ssh, as root in /root, with ``env`` set through env(1).
        """
        if env and self._is_vm(name):
            argv = ["env", *(f"{k}={v}" for k, v in env.items()), *argv]
            env = None
        cmd = self.exec_argv(name, argv)
        with subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=hostmod.console_env(env),
            start_new_session=True,
        ) as proc:
            try:
                out, err = proc.communicate(input, timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
                raise LabCommandError(name, argv, None, out, err, timeout=timeout) from None
        result = subprocess.CompletedProcess(list(argv), proc.returncode, out, err)
        if check and result.returncode != 0:
            raise LabCommandError(name, argv, result.returncode, out, err)
        return result

    def ssh_argv(self, name: str, argv: Sequence[str] = ()) -> list[str]:
        """``ssh -F DIR/ssh_config <name> -- argv``: the real OpenSSH client, strict host keys."""
        return ["ssh", "-F", str(self.ssh_config_path), name, *(["--", *argv] if argv else [])]

    # --- sshd ---------------------------------------------------------------------------------------

    def sshd_up(self, name: str) -> bool:
        """True if the host's sshd listens (on a VM: answers on its address)."""
        if self._is_vm(name):
            h = self.host(name)
            return (
                self.is_running(name)
                and h.ssh_address is not None
                and vmmod.sshd_answers(h.ssh_address, h.ssh_port)
            )
        return self.sshd_pid(name) is not None

    def sshd_pid(self, name: str) -> int | None:
        """Root-namespace PID of the host's listening sshd, or ``None`` if it is stopped (or the host
        is a VM: its sshd is in its own kernel)."""
        if self._is_vm(name):
            return None
        record = self._state.host(name)
        if record.init is None or not procs.is_alive(record.init):
            return None
        return hostmod.sshd_pid(record.init.pid)

    def stop_sshd(self, name: str) -> None:
        """Stop the host's sshd; the host, its sessions and its wireguard-go keep running."""
        self._namespace_host(name, "stop_sshd")
        self.exec(name, ["sh", "-c", hostmod.STOP_SSHD], timeout=20)

    def _namespace_host(self, name: str, what: str) -> None:
        if self._is_vm(name):
            raise OperationError(
                f"{what} works on namespace hosts only; {name} is a VM",
                hint=f"on a VM use systemctl: wiremesh lab exec {name} -- systemctl ...",
            )

    def start_sshd(self, name: str, timeout: float = 10.0) -> None:
        """Start the host's sshd again (nothing happens if it runs) and wait until it listens."""
        self._namespace_host(name, "start_sshd")
        if self.sshd_pid(name) is not None:
            return
        self.exec(name, ["sh", "-c", hostmod.START_SSHD], timeout=timeout)
        deadline = time.monotonic() + timeout
        while self.sshd_pid(name) is None:
            if time.monotonic() > deadline:
                log = hostmod.sshd_log(self._running(name).pid)
                raise OperationError(
                    f"sshd did not start on {name} within {timeout:g} s"
                    + (f": {log}" if log else "")
                )
            time.sleep(0.02)

    # --- VMs ----------------------------------------------------------------------------------------

    def _vm(self, name: str) -> VmState:
        self._running(name)
        if not self._is_vm(name):
            raise ValidationError(
                f"{name} is not a VM",
                hint="its VMs: " + (", ".join(v.name for v in self._state.vms) or "none"),
            )
        return self._state.vm(name)

    def _vm_names(self, names: Iterable[str] | None) -> list[str]:
        return [v.name for v in self._state.vms] if names is None else list(names)

    def close_ssh(self, name: str) -> None:
        """End the VM's ssh control master (its connection does not survive a reboot or a
        ``loadvm``); the next command logs in again."""
        control = Path(self._state.vm(name).control)
        if control.exists():
            subprocess.run(
                [*self._vm_ssh(name), "-O", "exit", name],
                capture_output=True,
                timeout=10,
                check=False,
            )
        left = [r for p in procs.pids_with_argument([str(control)]) if (r := procs.ref(p))]
        procs.kill(left)
        procs.wait_gone(left, timeout=5)
        control.unlink(missing_ok=True)

    def savevm(self, tag: str, names: Iterable[str] | None = None) -> None:
        """Snapshot the running VMs (all, or ``names``): RAM, devices and disk, in each overlay."""
        for name in self._vm_names(names):
            v = self._vm(name)
            self.close_ssh(name)  # no connection of ours inside the snapshot
            vmmod.snapshot_command(Path(v.qmp), f"savevm {tag}", name)

    def loadvm(self, tag: str, names: Iterable[str] | None = None) -> None:
        """Put the VMs (all, or ``names``) back into snapshot ``tag``, in under a second each.

        A restored guest runs on from the snapshot, its clock included: it is behind this machine's
        by the time since ``savevm``. That is left alone on purpose. Inside each guest everything
        agrees (wiremesh reads handshake ages against the host's own clock). Setting the clock
        forward instead makes the restored WireGuard sessions look that much older: after it,
        ``status`` found the links between restored VMs not up (their last handshakes minutes
        old by the new clock) while the sessions, timed on the guest's monotonic clock, saw no
        reason to rekey. Restore hosts that keep
        WireGuard state of their own (namespace hosts) to a fresh interface too, or they may
        refuse a restored guest's handshakes as replays (its TAI64N timestamps went back).
        """
        for name in self._vm_names(names):
            v = self._vm(name)
            self.close_ssh(name)
            vmmod.snapshot_command(Path(v.qmp), f"loadvm {tag}", name)

    def boot_id(self, name: str, timeout: float = 30.0) -> str:
        """The VM's boot id (``/proc/sys/kernel/random/boot_id``): a new one after every boot."""
        return self.exec(
            name, ["cat", "/proc/sys/kernel/random/boot_id"], timeout=timeout
        ).stdout.strip()

    def reboot(self, name: str) -> str:
        """``systemctl reboot`` on VM ``name``; returns its boot id from before, at once (see
        :meth:`wait_booted`)."""
        self._vm(name)
        before = self.boot_id(name)
        self.exec(name, ["systemctl", "reboot"], check=False, timeout=30)
        self.close_ssh(name)
        return before

    def wait_booted(self, name: str, before: str, timeout: float = vmmod.READY_TIMEOUT) -> float:
        """Wait until VM ``name`` runs a boot other than ``before`` and answers ssh; returns the
        seconds waited. (Right after ``systemctl reboot`` the old boot's sshd may still answer.)"""
        started = time.monotonic()
        while True:
            left = timeout - (time.monotonic() - started)
            if left <= 0:
                raise OperationError(
                    f"{name} did not come back from its reboot within {timeout:g} s; its console:\n"
                    + vmmod.tail(vmmod.paths(self.dir, name).console),
                )
            self.wait_ssh(name, timeout=left)
            try:
                if self.boot_id(name, timeout=min(20.0, max(left, 1.0))) != before:
                    return time.monotonic() - started
            except LabCommandError:
                pass  # going down, or not quite up
            self.close_ssh(name)
            time.sleep(1)

    def wait_ssh(self, name: str, timeout: float = vmmod.READY_TIMEOUT) -> float:
        """Wait until the VM's sshd answers; returns the seconds waited."""
        h = self._running(name)
        assert h.ssh_address is not None
        started = time.monotonic()
        while not vmmod.sshd_answers(h.ssh_address, h.ssh_port):
            if time.monotonic() - started > timeout:
                files = vmmod.paths(self.dir, name)
                raise OperationError(
                    f"{name}'s sshd did not answer within {timeout:g} s; its console:\n"
                    + vmmod.tail(files.console),
                )
            self._running(name)
            time.sleep(0.25)
        return time.monotonic() - started

    # --- life cycle ---------------------------------------------------------------------------------

    @classmethod
    def up(
        cls,
        directory: Path,
        hosts: int | None = None,
        *,
        sites: Mapping[str, int] | Iterable[Group] = (),
        nats: Mapping[str, int] | Iterable[Group] = (),
        ipv6: bool = False,
        underlay_mtu: int | Mapping[str | None, int] | None = None,
        vms: int = 0,
        vm_memory: int | None = None,
        wait: float = 0.0,
        progress: Progress | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> Lab:
        """Create a lab with its files in ``directory``; see :mod:`wiremesh.lab.build`.

        ``hosts`` public hosts come first, then ``sites`` (``{"a": 2}``: 2 hosts in site ``a``), then
        ``nats`` (``{"home": 2}``: 2 hosts behind NAT router ``home``); they are named lab1..labM in this
        order. ``ipv6`` adds a dual-stack underlay; ``underlay_mtu`` is one MTU for every host, or
        ``{"lab2": 1280}`` (the key ``None`` meaning every other host). ``vms`` public hosts that are
        QEMU VMs come last, each with ``vm_memory`` MiB of RAM (see :mod:`wiremesh.lab.vm`). See
        :mod:`wiremesh.lab.layout` for the addressing plan. Invalid values raise
        :class:`ValidationError` before anything is made.

        ``wait`` is how many seconds to wait for another running lab to go away (only one lab can run on
        a machine) before failing. On any failure everything made so far is removed again.
        """
        spec = make_spec(
            hosts,
            sites,
            nats,
            ipv6=ipv6,
            underlay_mtu=underlay_mtu,
            vms=vms,
            **({"vm_memory": vm_memory} if vm_memory is not None else {}),
        )
        return cls.up_spec(directory, spec, wait=wait, progress=progress, checkpoint=checkpoint)

    @classmethod
    def up_spec(
        cls,
        directory: Path,
        spec: LabSpec,
        *,
        wait: float = 0.0,
        progress: Progress | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> Lab:
        """:meth:`up` with a validated :class:`~wiremesh.lab.spec.LabSpec` (what the CLI builds)."""
        from wiremesh.lab.build import build

        state, launchers = build(
            directory, spec, wait=wait, progress=progress, checkpoint=checkpoint
        )
        return cls(state, launchers)

    @classmethod
    def open(cls, directory: Path) -> Lab:
        """The lab recorded in ``directory`` (:class:`ValidationError` if there is none)."""
        return cls(LabState.load(directory.absolute()))

    def down(self) -> None:
        """Remove the lab entirely: processes, namespaces, links, mounts, sysctls, its files in DIR."""
        down_dir(self.dir)
        for proc in self._launchers.values():  # reap our own children (no zombies left behind)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self._launchers.clear()

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()


def down_dir(directory: Path) -> bool:
    """Take down the lab in ``directory``; False if there was none. Raises if something is left."""
    directory = directory.absolute()
    with machine_lock():
        record = MachineRecord.load()
        if not LabState.exists(directory):
            if record is not None and record.dir == directory:
                from wiremesh.lab.teardown import release_machine

                release_machine(record, directory)  # a record whose up died before its first step
                return True
            return False
        state = LabState.load(directory)
        problems = teardown(state, record)
    if problems:
        raise OperationError(
            f"could not remove all of the lab in {directory}:\n  " + "\n  ".join(problems),
            hint=f"run `wiremesh lab down --dir {directory}` again; if it persists, remove what is "
            "listed by hand (ip link del / ip netns del / kill -9)",
        )
    return True
