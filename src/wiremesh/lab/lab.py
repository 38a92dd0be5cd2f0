"""The :class:`Lab`: bring emulated hosts up, use them, take them down.

``Lab.up`` writes the intent log before every resource it creates (see :mod:`wiremesh.lab.state`) and
rolls everything back if it fails; ``Lab.down`` (or ``wiremesh lab down``) removes what the log names,
also after a crash.
"""

from __future__ import annotations

import contextlib
import os
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
from wiremesh.lab.inventory import INVENTORY
from wiremesh.lab.parts import LabHost, LabRouter, LabSite
from wiremesh.lab.spec import Group, LabSpec, make_spec
from wiremesh.lab.sshkeys import IDENTITY, KNOWN_HOSTS, SSH_CONFIG
from wiremesh.lab.state import LabState, MachineRecord, machine_lock
from wiremesh.lab.teardown import teardown

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: called as ``up`` advances (for a progress bar)."""

Checkpoint = Callable[[str], None]
"""``checkpoint(step)``: called after each step of ``up`` ("state", "network", "routers", "host:lab2",
"ready", "files").
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
        """The hosts that were started (all of them, for a complete lab), in order."""
        return [
            self._lab_host(h.name, h.index, h.underlay_ip, h.netns, h.init.pid)
            for h in self._state.hosts
            if h.init is not None
        ]

    def _lab_host(self, name: str, index: int, underlay: str, netns: str, pid: int) -> LabHost:
        try:
            p = self.plan.host(name)
        except KeyError:  # a state that does not match its spec: show what the state says
            return LabHost(name, index, IPv4Address(underlay), netns, pid)
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
        """True if the host's PID 1 still runs."""
        record = self._state.host(name)
        return record.init is not None and procs.is_alive(record.init)

    def _running(self, name: str) -> LabHost:
        h = self.host(name)
        if not self.is_running(name):
            raise OperationError(
                f"lab host {name} is not running (its PID 1, {h.pid}, is gone)",
                hint=f"recreate the lab: wiremesh lab down --dir {self.dir}; wiremesh lab up ...",
            )
        return h

    # --- commands in hosts --------------------------------------------------------------------------

    def exec_argv(self, name: str, argv: Sequence[str]) -> list[str]:
        """The command line that runs ``argv`` inside host ``name``'s namespaces (``nsenter``)."""
        return hostmod.nsenter_argv(self._running(name).pid, argv)

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
        detaches into its own session) keeps running, reparented to the host's PID 1.
        """
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

    def sshd_pid(self, name: str) -> int | None:
        """Root-namespace PID of the host's listening sshd, or ``None`` if it is stopped."""
        record = self._state.host(name)
        if record.init is None or not procs.is_alive(record.init):
            return None
        return hostmod.sshd_pid(record.init.pid)

    def stop_sshd(self, name: str) -> None:
        """Stop the host's sshd; the host, its sessions and its wireguard-go keep running."""
        self.exec(name, ["sh", "-c", hostmod.STOP_SSHD], timeout=20)

    def start_sshd(self, name: str, timeout: float = 10.0) -> None:
        """Start the host's sshd again (nothing happens if it runs) and wait until it listens."""
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
        wait: float = 0.0,
        progress: Progress | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> Lab:
        """Create a lab with its files in ``directory``; see :mod:`wiremesh.lab.build`.

        ``hosts`` public hosts come first, then ``sites`` (``{"a": 2}``: 2 hosts in site ``a``), then
        ``nats`` (``{"home": 2}``: 2 hosts behind NAT router ``home``); they are named lab1..labM in this
        order. ``ipv6`` adds a dual-stack underlay; ``underlay_mtu`` is one MTU for every host, or
        ``{"lab2": 1280}`` (the key ``None`` meaning every other host). See :mod:`wiremesh.lab.layout`
        for the addressing plan. Invalid values raise :class:`ValidationError` before anything is made.

        ``wait`` is how many seconds to wait for another running lab to go away (only one lab can run on
        a machine) before failing. On any failure everything made so far is removed again.
        """
        spec = make_spec(hosts, sites, nats, ipv6=ipv6, underlay_mtu=underlay_mtu)
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
