"""One lab host: its private files, its PID 1, and running commands inside it.

A host is a named network namespace plus new mount, UTS and PID namespaces made by
``nsenter --net=/run/netns/NAME unshare --mount --uts --pid --fork --mount-proc --kill-child INIT``
(design.md section 4). Unlike design.md, PID 1 is not sshd but a tiny shell (:data:`INIT_SCRIPT`) that sets
the host up, starts sshd as a daemon and then only reaps orphans, so that sshd can be stopped and started
again while the host and its wireguard-go keep running.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from wiremesh.lab import procs, sshkeys
from wiremesh.lab.network import NETNS_DIR

INIT_SCRIPT = r"""#!/bin/sh
# PID 1 of a wiremesh lab host (written by `wiremesh lab up`). Arguments: HOSTNAME HOSTDIR.
# Runs in the host's own network, mount, UTS and PID namespaces; every mount below stays in this host.
set -eu
name=$1
d=$2
hostname "$name"
# Our copy of the root's /run/netns would hold a reference to every lab netns for as long as this host
# lives (and /run is hidden below anyway): detach it.
if mountpoint -q /run/netns; then umount -l /run/netns; fi
mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
# Writes under /etc and /var/lib land in this host's upper directories, never in the machine's files
# (overlayfs: lowerdir is read-only).
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$d/etc.upper,workdir=$d/etc.work" /etc
mount -t overlay overlay -o "lowerdir=/var/lib,upperdir=$d/varlib.upper,workdir=$d/varlib.work" /var/lib
mount --bind "$d/ssh" /etc/ssh
mkdir -p /etc/wireguard
mount --bind "$d/wireguard" /etc/wireguard
mount --bind "$d/root" /root
ip -batch "$d/net.batch"
# Private /run (so /run/wireguard/*.sock and /run/sshd.pid), /tmp and /var/log (sshd's wtmp/lastlog).
# These may hide the lab directory itself (under /tmp, say): everything from $d is mounted or read above.
mount -t tmpfs -o mode=0755,nosuid,nodev,size=64m tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev,size=256m tmpfs /tmp
mount -t tmpfs -o mode=0755,nosuid,nodev,size=16m tmpfs /var/log
mkdir -p /run/sshd /run/lock
/usr/sbin/sshd -f /etc/ssh/sshd_config -E /var/log/sshd.log
echo "$name: up"
# Reap orphans for ever: `wait` collects every exited child (dash calls wait3 for any PID while a job runs),
# such as a daemonised wireguard-go whose ssh session ended, or an sshd that was stopped.
while :; do
  sleep 2147483647 &
  wait || :
done
"""

INIT_FILE = "init.sh"
"""Where :data:`INIT_SCRIPT` is written (in ``DIR/hosts``)."""

CONSOLE_LOG = "console.log"
"""The host init's stdout and stderr (in its host directory)."""

SSHD_PIDFILE = "run/sshd.pid"
SSHD_LOG = "var/log/sshd.log"

CONSOLE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def prepare_host_dir(
    hostdir: Path,
    *,
    name: str,
    sshd_config: str,
    host_key: sshkeys.HostKey,
    authorized_key: str,
    net_batch: Sequence[str],
) -> None:
    """Create ``hostdir`` with everything the host mounts: /etc/ssh, /etc/wireguard, /root, overlays."""
    hostdir.mkdir(mode=0o700)
    for sub in ("etc.upper", "etc.work", "varlib.upper", "varlib.work"):
        (hostdir / sub).mkdir(mode=0o755)
    (hostdir / "etc.upper" / "hostname").write_text(f"{name}\n")
    ssh = hostdir / "ssh"
    ssh.mkdir(mode=0o755)
    (ssh / "sshd_config").write_text(sshd_config)
    sshkeys.write_private(ssh / "ssh_host_ed25519_key", host_key.private)
    (ssh / "ssh_host_ed25519_key.pub").write_text(f"{host_key.public} root@{name}\n")
    (hostdir / "wireguard").mkdir(mode=0o700)
    root = hostdir / "root"
    root.mkdir(mode=0o700)
    (root / ".ssh").mkdir(mode=0o700)
    sshkeys.write_private(root / ".ssh" / "authorized_keys", f"{authorized_key}\n".encode())
    (hostdir / "net.batch").write_text("".join(f"{line}\n" for line in net_batch))


def launch(netns: str, init: Path, name: str, hostdir: Path) -> subprocess.Popen[bytes]:
    """Start the host: enter its netns, make the other namespaces, run ``init`` as PID 1.

    The process we get back is ``unshare`` (``nsenter`` execs it); the host's PID 1 is its only child.
    ``--kill-child`` makes the kernel kill PID 1 if ``unshare`` dies. Output goes to ``console.log``.
    """
    console = os.open(hostdir / CONSOLE_LOG, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            [
                "nsenter",
                f"--net={NETNS_DIR / netns}",
                "--",
                "unshare",
                "--mount",
                "--uts",
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
                "--",
                "/bin/sh",
                str(init),
                name,
                str(hostdir),
            ],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=console,
            start_new_session=True,  # no signal from the caller's terminal reaches the host
            env={"PATH": CONSOLE_PATH, "LANG": "C.UTF-8"},
        )
    finally:
        os.close(console)


def find_init(launcher_pid: int) -> int | None:
    """The host's PID 1 (as a root-namespace PID): the only child of its ``unshare``."""
    kids = procs.children(launcher_pid)
    return kids[0] if kids else None


def host_path(init_pid: int, path: str) -> Path:
    """``path`` as the host sees it, through /proc/PID/root (proc(5)): its private /run, /etc..."""
    return procs.PROC / str(init_pid) / "root" / path.lstrip("/")


def sshd_pid(init_pid: int) -> int | None:
    """The root-namespace PID of the host's listening sshd, or ``None`` if it does not run."""
    try:
        inner = int(host_path(init_pid, SSHD_PIDFILE).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    for child in procs.children(init_pid):
        if procs.ns_pid(child) == inner:
            return child
    return None


def sshd_log(init_pid: int) -> str:
    """The end of the host's sshd log (for error messages)."""
    try:
        return host_path(init_pid, SSHD_LOG).read_text()[-2000:]
    except OSError:
        return ""


def console_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a command run "on the console" of a host: root's, nothing from the caller."""
    env = {
        "PATH": CONSOLE_PATH,
        "HOME": "/root",
        "USER": "root",
        "LOGNAME": "root",
        "SHELL": "/bin/sh",
        "LANG": "C.UTF-8",
    }
    env.update(extra or {})
    return env


def nsenter_argv(init_pid: int, argv: Sequence[str]) -> list[str]:
    """Run ``argv`` inside every namespace of the host whose PID 1 is ``init_pid``, in /root."""
    return [
        "nsenter",
        "-t",
        str(init_pid),
        "--mount",
        "--uts",
        "--net",
        "--pid",
        "--wdns=/root",
        "--",
        *argv,
    ]


STOP_SSHD = r"""
pid=$(cat /run/sshd.pid 2>/dev/null) || exit 0
kill "$pid" 2>/dev/null || :
i=0
while kill -0 "$pid" 2>/dev/null; do
  i=$((i + 1)); [ "$i" -lt 200 ] || { echo "sshd $pid did not stop" >&2; exit 1; }
  sleep 0.05
done
rm -f /run/sshd.pid
"""
"""Stop the listening sshd (SIGTERM; open sessions live on, as with ``systemctl stop ssh``)."""

START_SSHD = (
    "mkdir -p /run/sshd && exec /usr/sbin/sshd -f /etc/ssh/sshd_config -E /var/log/sshd.log"
)
"""Start sshd as a daemon: it forks, the parent exits, and the daemon is reparented to the host's PID 1."""
