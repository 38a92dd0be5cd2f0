"""What the lab needs from the machine, checked up front with errors that name the package to install."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from wiremesh.errors import OperationError

PROGRAMS: dict[str, str] = {
    "ip": "iproute2",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "mount": "mount",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "ssh-keyscan": "openssh-client",
    "wireguard-go": "wireguard-go",
    "wg": "wireguard-tools",
}
"""Program -> Debian/Ubuntu package that provides it."""

NAT_PROGRAMS: dict[str, str] = {
    "iptables-restore": "iptables",
    "sysctl": "procps",
}
"""What NAT routers (``--nat``) need in addition."""

SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
"""sshd lives in /usr/sbin, which a non-login PATH may lack; look there too."""


def find_program(name: str) -> str | None:
    """Absolute path of ``name`` on $PATH or in the usual system directories."""
    path = os.environ.get("PATH", "")
    return shutil.which(name, path=f"{path}:{SEARCH_PATH}" if path else SEARCH_PATH)


def require_root() -> None:
    """Raise :class:`OperationError` unless we run as root."""
    if os.geteuid() != 0:
        raise OperationError(
            "the lab needs root (it creates network namespaces, bridges and mounts)",
            hint="run it as root, e.g. `sudo wiremesh lab up ...`",
        )


def check_prerequisites(tun: Path = Path("/dev/net/tun"), *, nat: bool = False) -> None:
    """Raise :class:`OperationError` naming what is missing: root, /dev/net/tun, or programs (with
    ``nat``, also what NAT routers need)."""
    require_root()
    if not tun.exists():
        raise OperationError(
            f"{tun} is missing: wireguard-go cannot create interfaces",
            hint="load the tun module (`modprobe tun`) or, in a container, pass the device "
            "(docker: --device /dev/net/tun --cap-add NET_ADMIN)",
        )
    wanted = {**PROGRAMS, **(NAT_PROGRAMS if nat else {})}
    missing = {name: pkg for name, pkg in wanted.items() if find_program(name) is None}
    if missing:
        packages = sorted(set(missing.values()))
        raise OperationError(
            "missing programs: " + ", ".join(f"{n} (package {p})" for n, p in missing.items()),
            hint=f"install them: apt-get install {' '.join(packages)}",
        )
