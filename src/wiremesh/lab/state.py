"""The lab's intent log (``DIR/lab.json``) and the machine-wide record (``/run/wiremesh-lab``).

Every resource is written to the intent log *before* it is created, so ``lab down`` can remove all of it
after a crash or a half-made ``up``: a recorded resource may or may not exist, and each removal step
tolerates its absence. Writes are atomic (temporary file + rename) but not fsynced: the log only has to
survive the death of the process that writes it; after a machine crash the kernel objects are gone anyway.

Only one lab may run on a machine (all labs would share 198.51.100.0/24), so a machine-wide record names
the running lab's directory and keeps the original sysctl values to restore.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wiremesh.errors import ValidationError
from wiremesh.lab.spec import LabSpec

STATE_FILE = "lab.json"
STATE_VERSION = 2
"""Version 2 added VMs (``vms``, ``taps``); a version 1 state is read as a lab without VMs."""
STATE_VERSIONS = (1, 2)
STATE_KIND = "wiremesh-lab"

MACHINE_DIR = Path("/run/wiremesh-lab")
"""Machine-wide record of the running lab. /run is a tmpfs on most machines (not on this one: see
:func:`boot_id`, which tells a record left over from before a reboot)."""


def boot_id() -> str:
    """This boot's random id (proc(5)); a record from another boot describes nothing that still exists."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def write_json_atomic(path: Path, value: dict[str, Any], mode: int = 0o600) -> None:
    """Write ``value`` as JSON to ``path`` via a temporary file and rename (never a torn file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        json.dump(value, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValidationError(
            f"cannot read lab state {path}: {exc}",
            hint="if the lab is gone, remove the file; otherwise restore it and run `wiremesh lab down`",
        ) from exc
    if not isinstance(value, dict):
        raise ValidationError(f"lab state {path} is not a JSON object")
    return value


def _self_ref() -> ProcRef | None:
    from wiremesh.lab.procs import start_time

    start = start_time(os.getpid())
    return ProcRef(os.getpid(), start) if start is not None else None


@dataclass
class ProcRef:
    """A process we started, by PID and start time (so a reused PID is never mistaken for ours)."""

    pid: int
    start: int

    @staticmethod
    def from_json(value: Any) -> ProcRef | None:
        """Parse ``{"pid": .., "start": ..}`` or ``null``."""
        if value is None:
            return None
        return ProcRef(pid=int(value["pid"]), start=int(value["start"]))


@dataclass
class HostState:
    """One lab host as recorded: names, addresses and the processes that run it."""

    name: str
    index: int
    netns: str
    underlay_ip: str
    launcher: ProcRef | None = None
    """``nsenter``/``unshare`` in the root PID namespace, the parent of the host's PID 1."""
    init: ProcRef | None = None
    """The host's PID 1 (a small shell that reaps orphans), as seen from the root PID namespace."""

    @staticmethod
    def from_json(value: dict[str, Any]) -> HostState:
        """Parse one host record."""
        return HostState(
            name=str(value["name"]),
            index=int(value["index"]),
            netns=str(value["netns"]),
            underlay_ip=str(value["underlay_ip"]),
            launcher=ProcRef.from_json(value.get("launcher")),
            init=ProcRef.from_json(value.get("init")),
        )


@dataclass
class VmState:
    """One lab VM as recorded: its files, sockets, image and QEMU process."""

    name: str
    index: int
    tap: str
    underlay_ip: str
    dir: str
    """Its directory, relative to the lab directory (``vms/labN``)."""
    qmp: str
    """Its QMP monitor socket (absolute: in /run/wiremesh-lab/vm)."""
    control: str
    """Its ssh control socket (absolute)."""
    image: str
    """The key of the image its overlay is based on."""
    qemu: ProcRef | None = None

    @staticmethod
    def from_json(value: dict[str, Any]) -> VmState:
        """Parse one VM record."""
        return VmState(
            name=str(value["name"]),
            index=int(value["index"]),
            tap=str(value["tap"]),
            underlay_ip=str(value["underlay_ip"]),
            dir=str(value["dir"]),
            qmp=str(value["qmp"]),
            control=str(value["control"]),
            image=str(value["image"]),
            qemu=ProcRef.from_json(value.get("qemu")),
        )


@dataclass
class LabState:
    """The intent log of one lab. Lists name what *may* exist; ``status`` says how far ``up`` got."""

    dir: Path
    hosts_wanted: int
    status: str = "creating"
    """``creating`` while ``up`` runs (or after it crashed), ``up`` once every host answered SSH."""
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    boot_id: str = field(default_factory=boot_id)
    owner: ProcRef | None = field(default_factory=_self_ref)
    """The process that ran ``up``: while it lives, a lab may be in use by it (a test run)."""
    created_dir: bool = False
    sysctl: bool = False
    bridges: list[str] = field(default_factory=list)
    netns: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)
    hosts: list[HostState] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    """Files and directories in ``dir`` that the lab made, relative to ``dir``."""
    taps: list[str] = field(default_factory=list)
    vms: list[VmState] = field(default_factory=list)
    spec: LabSpec | None = None
    """What the lab was made of (public hosts, sites, NATs, IPv6, MTUs); ``None`` in a state written
    before labs had topologies, which means ``hosts_wanted`` public hosts."""

    @property
    def topology(self) -> LabSpec:
        """:attr:`spec`, or the flat lab of ``hosts_wanted`` public hosts that an older state means."""
        return self.spec if self.spec is not None else LabSpec(public=self.hosts_wanted)

    @property
    def path(self) -> Path:
        """Where this state lives: ``DIR/lab.json``."""
        return self.dir / STATE_FILE

    def to_json(self) -> dict[str, Any]:
        """The on-disk form, versioned."""
        value = asdict(self)
        value["dir"] = str(self.dir)
        value["spec"] = self.spec.to_json() if self.spec is not None else None
        return {"kind": STATE_KIND, "version": STATE_VERSION, **value}

    def save(self) -> None:
        """Write the state atomically (mode 0600)."""
        write_json_atomic(self.path, self.to_json())

    def add_file(self, relative: str) -> None:
        """Record a file or directory in ``dir`` before creating it."""
        if relative not in self.files:
            self.files.append(relative)

    def host(self, name: str) -> HostState:
        """The recorded host called ``name``."""
        for h in self.hosts:
            if h.name == name:
                return h
        raise KeyError(name)

    def vm(self, name: str) -> VmState:
        """The recorded VM called ``name``."""
        for v in self.vms:
            if v.name == name:
                return v
        raise KeyError(name)

    @staticmethod
    def exists(directory: Path) -> bool:
        """True if ``directory`` holds a lab state file."""
        return (directory / STATE_FILE).exists()

    @staticmethod
    def load(directory: Path) -> LabState:
        """Read ``DIR/lab.json``; :class:`ValidationError` if it is missing, foreign or too new."""
        path = directory / STATE_FILE
        if not path.exists():
            raise ValidationError(
                f"no lab in {directory} (no {STATE_FILE})",
                hint=f"start one with `wiremesh lab up --hosts 3 --dir {directory}`",
            )
        value = _read_json(path)
        if value.get("kind") != STATE_KIND:
            raise ValidationError(f"{path} is not a wiremesh lab state file")
        version = value.get("version")
        if version not in STATE_VERSIONS:
            raise ValidationError(
                f"{path} has version {version}; this wiremesh understands versions "
                + " and ".join(map(str, STATE_VERSIONS)),
                hint="use the wiremesh version that created the lab to take it down",
            )
        try:
            return LabState(
                dir=Path(str(value["dir"])),
                hosts_wanted=int(value["hosts_wanted"]),
                status=str(value["status"]),
                created=str(value["created"]),
                boot_id=str(value["boot_id"]),
                owner=ProcRef.from_json(value.get("owner")),
                created_dir=bool(value["created_dir"]),
                sysctl=bool(value["sysctl"]),
                bridges=[str(x) for x in value["bridges"]],
                netns=[str(x) for x in value["netns"]],
                veths=[str(x) for x in value["veths"]],
                hosts=[HostState.from_json(h) for h in value["hosts"]],
                files=[str(x) for x in value["files"]],
                taps=[str(x) for x in value.get("taps", [])],
                vms=[VmState.from_json(v) for v in value.get("vms", [])],
                spec=LabSpec.from_json(value["spec"]) if value.get("spec") is not None else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(f"{path} is damaged: missing or bad field {exc}") from exc


@dataclass
class MachineRecord:
    """The machine-wide record: which lab runs, and the sysctl values to restore when it goes down."""

    dir: Path
    boot_id: str = field(default_factory=boot_id)
    sysctl_saved: dict[str, str] = field(default_factory=dict)
    """Original values of the sysctls the lab raised (``key -> value`` as read from /proc/sys)."""
    created_netns_dir: bool = False
    """True if /run/netns did not exist before this lab (``ip netns add`` makes it a mount point)."""

    def to_json(self) -> dict[str, Any]:
        """The on-disk form, versioned."""
        return {
            "kind": "wiremesh-lab-machine",
            "version": 1,
            "dir": str(self.dir),
            "boot_id": self.boot_id,
            "sysctl_saved": self.sysctl_saved,
            "created_netns_dir": self.created_netns_dir,
        }

    @property
    def stale(self) -> bool:
        """True if the record comes from an earlier boot (its kernel objects and sysctls are gone)."""
        return bool(self.boot_id) and self.boot_id != boot_id()

    def save(self, machine_dir: Path = MACHINE_DIR) -> None:
        """Write the record atomically."""
        machine_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_json_atomic(machine_dir / "lab.json", self.to_json())

    @staticmethod
    def load(machine_dir: Path = MACHINE_DIR) -> MachineRecord | None:
        """The record, or ``None`` if no lab is recorded."""
        path = machine_dir / "lab.json"
        if not path.exists():
            return None
        value = _read_json(path)
        try:
            return MachineRecord(
                dir=Path(str(value["dir"])),
                boot_id=str(value.get("boot_id", "")),
                sysctl_saved={str(k): str(v) for k, v in dict(value["sysctl_saved"]).items()},
                created_netns_dir=bool(value.get("created_netns_dir", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(
                f"{path} is damaged: {exc}",
                hint=f"if no lab runs, remove {path} (and check the sysctls net.ipv4.neigh.default.*)",
            ) from exc

    @staticmethod
    def remove(machine_dir: Path = MACHINE_DIR) -> None:
        """Delete the record (the lock file stays; it is empty and harmless)."""
        with contextlib.suppress(FileNotFoundError):
            (machine_dir / "lab.json").unlink()


@contextlib.contextmanager
def machine_lock(machine_dir: Path = MACHINE_DIR) -> Iterator[None]:
    """Hold the machine-wide lab lock (flock(2)), so that two ``up``/``down`` never interleave."""
    machine_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(machine_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
