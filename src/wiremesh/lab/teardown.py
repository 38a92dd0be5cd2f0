"""Remove everything a lab made, from its intent log: also after a crash or a half-made ``up``.

Each step stands alone (design.md style 10): it tolerates resources that were never created, and a failing
step does not stop the others. What could not be removed is returned, and checked at the end.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from wiremesh.lab import network, procs, sysctl
from wiremesh.lab.state import STATE_FILE, LabState, MachineRecord, ProcRef


def mount_points(mountinfo: Path = Path("/proc/self/mountinfo")) -> list[str]:
    """Mount points of the caller's mount namespace (field 5 of mountinfo, proc(5), octal escapes)."""
    points = []
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(_unescape(fields[4]))
    return points


def _unescape(text: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo (fs/proc_namespace.c, mangle()).
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and i + 4 <= len(text) and text[i + 1 : i + 4].isdigit():
            out.append(chr(int(text[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _under(path: str, directory: Path) -> bool:
    return path == str(directory) or path.startswith(str(directory).rstrip("/") + "/")


def vm_markers(state: LabState) -> list[str]:
    """Strings that only the command line of one of this lab's VM processes contains: its VM
    directory (QEMU's disks, logs) and its sockets (QEMU's monitor, the ssh control masters)."""
    if not state.vms:
        return []
    from wiremesh.lab import vm

    return [str(state.dir / vm.VM_DIR) + "/", str(vm.RUN_DIR / vm.token(state.dir))]


def vm_processes(state: LabState) -> list[ProcRef]:
    """The lab's VM processes: recorded QEMUs, and any process whose command line names the lab's
    VM files (a QEMU started just before a crash, before it was recorded; ssh control masters)."""
    found = [v.qemu for v in state.vms if v.qemu]
    for pid in procs.pids_with_argument(vm_markers(state)):
        ref = procs.ref(pid)
        if ref and ref not in found:
            found.append(ref)
    return found


def kill_processes(state: LabState) -> list[str]:
    """SIGKILL the VMs, the hosts' PID 1, then their launchers and anything still in a lab netns; check
    they are gone.

    PID 1 goes first and alone: its ``unshare`` parent then reaps it and exits by itself, so no PID 1 is
    left as a zombie for the machine's init to collect. A VM is killed outright too: its disk is a
    throw-away overlay, so there is nothing to shut down cleanly.
    """
    vms = vm_processes(state)
    procs.kill(vms)
    inits = [h.init for h in state.hosts if h.init]
    procs.kill(inits)
    procs.wait_gone(inits, timeout=5)
    rest = [h.launcher for h in state.hosts if h.launcher]
    # A process started after the last state write (a crash between spawn and record), or one that
    # setns'd into a host, is found by its network namespace, which only the lab created (ip-netns(8)).
    for name in state.netns:
        for pid in procs.pids_in_netns(network.NETNS_DIR / name):
            ref = procs.ref(pid)
            if ref:
                rest.append(ref)
    procs.kill(rest)
    left = procs.wait_gone(vms + inits + rest)
    return [f"process {p.pid} is still alive after SIGKILL" for p in left]


def delete_links(state: LabState) -> list[str]:
    """Delete the root-side veths, then the namespaces, then the bridges; wait until they are gone.

    Veths first: deleting a netns frees its links asynchronously (in the kernel's cleanup_net work), so a
    veth's root end can outlive ``ip netns del`` for a moment; deleting it directly is synchronous.
    """
    problems: list[str] = []
    links = network.existing_links()
    lines = [f"link del {v}" for v in state.veths + state.taps if v in links]
    namespaces = network.existing_netns()
    lines += [f"netns del {n}" for n in state.netns if n in namespaces]
    lines += [f"link del {b}" for b in state.bridges if b in links]
    if lines:
        try:
            network.run_batch(lines, force=True)
        except Exception as exc:
            problems.append(str(exc))
    deadline = time.monotonic() + 5
    while True:
        left_links = [
            n for n in state.veths + state.taps + state.bridges if n in network.existing_links()
        ]
        left_ns = [n for n in state.netns if n in network.existing_netns()]
        if not (left_links or left_ns) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    problems += [f"link {n} still exists" for n in left_links]
    problems += [f"network namespace {n} still exists" for n in left_ns]
    return problems


def unmount_under(directory: Path) -> list[str]:
    """Lazily unmount anything mounted under ``directory`` in this mount namespace (there should be none)."""
    problems = []
    for point in sorted(mount_points(), key=len, reverse=True):
        if _under(point, directory):
            proc = subprocess.run(
                ["umount", "-l", point], capture_output=True, text=True, check=False
            )
            if proc.returncode != 0:
                problems.append(f"cannot unmount {point}: {proc.stderr.strip()}")
    return problems


def remove_files(state: LabState) -> list[str]:
    """Remove the files and directories the lab recorded in its directory, then the state file."""
    problems = []
    root = state.dir.resolve()
    for rel in reversed(state.files):
        path = (root / rel).resolve()
        if path == root or not _under(str(path), root):  # never leave the lab directory
            problems.append(f"refusing to remove {path}: outside {root}")
            continue
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError as exc:
            problems.append(f"cannot remove {path}: {exc}")
    for v in state.vms:  # sockets outside the lab directory (see wiremesh.lab.vm.RUN_DIR)
        for socket in (Path(v.qmp), Path(v.control)):
            try:
                socket.unlink(missing_ok=True)
            except OSError as exc:
                problems.append(f"cannot remove {socket}: {exc}")
    if problems:
        return problems  # keep the state file: it is the only record of what is left
    with contextlib.suppress(FileNotFoundError):
        (root / STATE_FILE).unlink()
    if state.created_dir:
        with contextlib.suppress(OSError):  # not empty: someone else's files, keep them
            root.rmdir()
    return problems


def release_machine(record: MachineRecord | None, directory: Path) -> list[str]:
    """Restore the sysctls and the /run/netns mount if this lab made them, then drop the record."""
    if record is None or record.dir != directory:
        return []
    problems = []
    if not record.stale:
        failed = sysctl.restore(record.sysctl_saved)
        problems += [f"cannot restore sysctl {k}" for k in failed]
        if record.created_netns_dir:
            problems += _remove_netns_dir()
    if not problems:
        MachineRecord.remove()
    return problems


def _remove_netns_dir() -> list[str]:
    # `ip netns add` bind-mounts /run/netns on itself (to make it shared) and leaves that mount behind;
    # remove it only while it is empty, i.e. nobody else has a named netns.
    netns_dir = network.NETNS_DIR
    try:
        if any(netns_dir.iterdir()):
            return []
    except FileNotFoundError:
        return []
    if str(netns_dir) in mount_points():
        proc = subprocess.run(
            ["umount", str(netns_dir)], capture_output=True, text=True, check=False
        )
        if proc.returncode != 0:
            return [f"cannot unmount {netns_dir}: {proc.stderr.strip()}"]
    with contextlib.suppress(OSError):
        netns_dir.rmdir()
    return []


def teardown(state: LabState, record: MachineRecord | None) -> list[str]:
    """Remove the whole lab described by ``state``; returns what could not be removed (empty: all gone)."""
    problems: list[str] = []
    steps: tuple[tuple[str, Callable[[], list[str]]], ...] = (
        ("processes", lambda: kill_processes(state)),
        ("links", lambda: delete_links(state)),
        ("mounts", lambda: unmount_under(state.dir.resolve())),
    )
    for name, step in steps:
        try:
            problems += step()
        except Exception as exc:  # one failing step must not stop the others
            problems.append(f"{name}: {exc}")
    if problems:
        # While anything above is left, the lab still exists: keep its files (the state file is the way
        # to find it again), its machine record and its raised sysctls.
        return problems
    problems += remove_files(state)
    try:
        problems += release_machine(record, state.dir)
    except Exception as exc:
        problems.append(f"machine record: {exc}")
    return problems
