"""Lab hosts that are QEMU virtual machines: a real kernel with the WireGuard module, systemd, reboots.

A VM runs the cached image (:mod:`wiremesh.lab.image`) on its own qcow2 overlay, under QEMU's software
emulation (TCG: ``/dev/kvm`` is not usable on every machine, and TCG works everywhere). Its network card
is a tap on the lab's public bridge, so it sits on the underlay like a namespace host. Everything that
makes it *this* host — hostname, machine id, static address, ssh host key, authorized key — is on a
small read-only second disk, a tar archive that the image's initramfs unpacks before systemd starts
(see :data:`wiremesh.lab.image.INITRAMFS_HOOK`): the host key is known before the VM boots, so the
lab's strict known_hosts works as for namespace hosts, and it is the same after a reboot.

Each VM has a QMP monitor socket, used for snapshots (``savevm``/``loadvm``: the identity disk is
read-only, so only the qcow2 overlay is snapshotted, RAM included) and to stop it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import socket
import subprocess
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv6Interface
from pathlib import Path

from wiremesh.errors import OperationError
from wiremesh.lab import sshkeys
from wiremesh.lab.image import KERNEL_CMDLINE, Image

VM_PROGRAMS: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
}
"""Program -> Debian package, needed to run lab VMs."""

TB_SIZE_MIB = 128
"""QEMU's translated-code cache: its default (1 GiB per VM under TCG) would dominate host memory."""

MAX_BOOTING = 2
"""VMs booting at the same time. On 2 CPUs, two boot as fast as one; a third slows all of them."""

READY_TIMEOUT = 240.0
"""Seconds from a VM's start until its sshd must answer (about 20 s here when the machine is idle)."""

VM_DIR = "vms"
"""Per-VM files in the lab directory: ``DIR/vms/labN/`` (overlay, identity disk, logs)."""

DISK = "disk.qcow2"
IDENTITY = "identity.tar"
CONSOLE_LOG = "console.log"
QEMU_LOG = "qemu.log"

RUN_DIR = Path("/run/wiremesh-lab/vm")
"""Monitor and ssh control sockets (a socket path has at most 107 bytes; lab directories can be long).
One lab runs per machine; the names still carry the lab's :func:`token`."""


def token(lab_dir: Path) -> str:
    """A short name for the lab in ``lab_dir``, for its sockets in :data:`RUN_DIR`."""
    return hashlib.sha256(str(lab_dir).encode()).hexdigest()[:10]


def mac_address(index: int) -> str:
    """The MAC address of host ``index``'s network card: locally administered, QEMU's 52:54:00 prefix."""
    return f"52:54:00:77:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}"


@dataclass(frozen=True)
class VmPaths:
    """Where one VM's files live."""

    dir: Path
    qmp: Path
    control: Path

    @property
    def disk(self) -> Path:
        """Its qcow2 overlay of the image."""
        return self.dir / DISK

    @property
    def identity(self) -> Path:
        """Its identity disk (a tar archive, attached read-only)."""
        return self.dir / IDENTITY

    @property
    def console(self) -> Path:
        """Its serial console's output."""
        return self.dir / CONSOLE_LOG

    @property
    def qemu_log(self) -> Path:
        """QEMU's own stdout and stderr."""
        return self.dir / QEMU_LOG


def paths(lab_dir: Path, name: str) -> VmPaths:
    """The files of VM ``name`` in the lab in ``lab_dir``."""
    t = token(lab_dir)
    return VmPaths(
        dir=lab_dir / VM_DIR / name,
        qmp=RUN_DIR / f"{t}-{name}.qmp",
        control=RUN_DIR / f"{t}-{name}.ssh",
    )


# --- identity ----------------------------------------------------------------------------------------


def network_unit(
    mac: str,
    addresses: Sequence[IPv4Interface | IPv6Interface],
    mtu: int | None = None,
) -> str:
    """The systemd-networkd config of the VM's underlay link: static addresses, nothing routed
    beyond the lab's subnets (no gateway), no link-local or autoconfigured IPv6."""
    lines = ["[Match]", f"MACAddress={mac}", ""]
    if mtu is not None:
        lines += ["[Link]", f"MTUBytes={mtu}", ""]
    lines += ["[Network]"]
    lines += [f"Address={a.with_prefixlen}" for a in addresses]
    lines += ["LinkLocalAddressing=no", "IPv6AcceptRA=no", ""]
    return "\n".join(lines)


def identity_archive(
    *,
    name: str,
    mac: str,
    addresses: Sequence[IPv4Interface | IPv6Interface],
    mtu: int | None,
    host_key: sshkeys.HostKey,
    authorized_key: str,
) -> bytes:
    """The identity disk's content: a tar archive of files relative to the VM's root directory.

    Nothing in it is a file wiremesh manages on hosts (such as /etc/hosts), since it is unpacked again
    on every boot.
    """
    files: list[tuple[str, bytes, int]] = [
        ("etc/hostname", f"{name}\n".encode(), 0o644),
        ("etc/machine-id", f"{secrets.token_hex(16)}\n".encode(), 0o444),
        (
            "etc/systemd/network/10-wiremesh-lab.network",
            network_unit(mac, addresses, mtu).encode(),
            0o644,
        ),
        ("etc/ssh/ssh_host_ed25519_key", host_key.private, 0o600),
        ("etc/ssh/ssh_host_ed25519_key.pub", f"{host_key.public} root@{name}\n".encode(), 0o644),
        ("root/.ssh/authorized_keys", f"{authorized_key}\n".encode(), 0o600),
    ]
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        ssh_dir = tarfile.TarInfo("root/.ssh")
        ssh_dir.type, ssh_dir.mode = tarfile.DIRTYPE, 0o700
        tar.addfile(ssh_dir)
        for path, data, mode in files:
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --- running QEMU ------------------------------------------------------------------------------------


def create_overlay(image: Image, disk: Path) -> None:
    """A qcow2 overlay of the image's disk at ``disk`` (the image itself is never written)."""
    proc = subprocess.run(
        [
            *("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw"),
            *("-b", str(image.rootfs), str(disk)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise OperationError(
            f"qemu-img cannot create {disk}: {proc.stderr.strip()}",
            hint="check the image: wiremesh lab image ls",
        )


def qemu_argv(
    *,
    name: str,
    image: Image,
    files: VmPaths,
    tap: str,
    mac: str,
    memory: int,
) -> list[str]:
    """The QEMU command line of one VM."""
    return [
        "qemu-system-x86_64",
        *("-name", f"{name},process=wm-{name}"),
        *("-nodefaults", "-no-user-config", "-display", "none"),
        *("-machine", "q35", "-accel", f"tcg,thread=multi,tb-size={TB_SIZE_MIB}"),
        *("-cpu", "max", "-smp", "1", "-m", str(memory)),
        *("-kernel", str(image.kernel), "-initrd", str(image.initrd)),
        *("-append", KERNEL_CMDLINE),
        # The overlay is thrown away with the lab: no need to flush it to the disk.
        *("-drive", f"file={files.disk},if=virtio,format=qcow2,cache=unsafe"),
        # Read-only, so that savevm (which needs every writable disk to be qcow2) leaves it alone.
        *("-drive", f"file={files.identity},if=virtio,format=raw,readonly=on"),
        *("-netdev", f"tap,id=net0,ifname={tap},script=no,downscript=no"),
        *("-device", f"virtio-net-pci,netdev=net0,mac={mac}"),
        *("-device", "virtio-rng-pci"),
        *("-serial", f"file:{files.console}"),
        *("-qmp", f"unix:{files.qmp},server=on,wait=off"),
    ]


def launch(argv: Sequence[str], files: VmPaths) -> subprocess.Popen[bytes]:
    """Start QEMU in its own session (no signal from the caller's terminal reaches it)."""
    log = os.open(files.qemu_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    finally:
        os.close(log)


def sshd_answers(address: IPv4Address, port: int = 22, timeout: float = 1.0) -> bool:
    """True if something at ``address:port`` sends an SSH banner (sshd is up)."""
    try:
        with socket.create_connection((str(address), port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def tail(path: Path, limit: int = 1500) -> str:
    """The end of a log file (for error messages)."""
    try:
        return path.read_text(errors="replace")[-limit:].strip() or "(empty)"
    except OSError:
        return "(none)"


# --- the monitor -------------------------------------------------------------------------------------


class Monitor:
    """A QMP connection to one VM (qemu-qmp-ref(7)), used for HMP commands such as ``savevm``."""

    def __init__(self, path: Path, timeout: float = 120.0) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(str(path))
        except OSError as exc:
            self._sock.close()
            raise OperationError(
                f"cannot connect to the VM monitor {path}: {exc}",
                hint="is the VM running? wiremesh lab ls",
            ) from exc
        self._file = self._sock.makefile("rw", encoding="utf-8")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict[str, object]:
        line = self._file.readline()
        if not line:
            raise OperationError("the VM monitor closed the connection")
        value = json.loads(line)
        assert isinstance(value, dict)
        return value

    def execute(self, command: str, **arguments: object) -> object:
        """Run a QMP command; returns its ``return`` value, raises on an ``error``."""
        self._file.write(json.dumps({"execute": command, "arguments": arguments}) + "\n")
        self._file.flush()
        while True:
            answer = self._read()
            if "return" in answer:
                return answer["return"]
            if "error" in answer:
                raise OperationError(f"QMP {command}: {answer['error']}")
            # anything else is an asynchronous event: skip it

    def hmp(self, command: str) -> str:
        """Run a human-monitor command; HMP reports errors only as text, so any output of the
        commands used here (savevm, loadvm, delvm) means it failed."""
        out = self.execute("human-monitor-command", **{"command-line": command})
        return str(out or "")

    def close(self) -> None:
        """Close the connection."""
        with contextlib.suppress(OSError):
            self._file.close()
            self._sock.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def snapshot_command(qmp: Path, command: str, name: str) -> None:
    """``savevm TAG`` / ``loadvm TAG`` / ``delvm TAG`` through the monitor; raises on any error text."""
    with Monitor(qmp) as monitor:
        out = monitor.hmp(command).strip()
    if out:
        raise OperationError(
            f"{name}: `{command}` failed: {out}",
            hint="list the VM's snapshots: echo 'info snapshots' through its monitor",
        )
