"""The disk image of lab VMs: built from Debian packages on first use, cached, listed and removed.

An image is a Debian bookworm root file system made by ``mmdebstrap`` (systemd, OpenSSH, the WireGuard
tools and Debian's cloud kernel, which has the WireGuard module) and turned into a raw ext4 disk image by
``mkfs.ext4 -d`` (no mounts, no loop devices), with the kernel and initramfs beside it for QEMU's
``-kernel``/``-initrd``. VMs never write to it: each runs on its own qcow2 overlay.

Images are cached in :data:`CACHE` (``$WIREMESH_IMAGE_CACHE`` overrides it) under a key derived from the
package list, the build recipe and :data:`BUILDER_VERSION`, so a change to any of them builds a new image
and an old one is never reused by mistake. Packages come from this machine's own apt sources (read from
``/etc/apt/sources.list*``, passed to mmdebstrap as they are): the image is the same whatever mirror the
machine uses, and the build needs no network configuration of its own.

Everything a build makes lives in one temporary directory in the cache, removed on failure; mmdebstrap
runs in its own mount and PID namespaces (``unshare``), tied to the builder by a parent-death signal,
so the mounts it makes (/proc, /sys, /dev in the chroot) vanish with it even if the builder is killed.
Only one build runs at a time (``flock`` on the cache's lock file); a build directory left by a killed
build is removed by the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wiremesh.errors import OperationError, ValidationError
from wiremesh.lab.prereq import find_program, require_root

BUILDER_VERSION = 1
"""Bump when the image changes in a way :data:`RECIPE` and :data:`PACKAGES` do not show."""

CACHE = Path(os.environ.get("WIREMESH_IMAGE_CACHE", "/var/cache/wiremesh/images"))
"""Where built images are kept (a system cache directory: images are big and slow to make)."""

SUITE = "bookworm"

PACKAGES: tuple[str, ...] = (
    "systemd",
    "systemd-sysv",
    "udev",
    "openssh-server",
    "wireguard-tools",
    "iproute2",
    "iputils-ping",
    "nftables",
    "linux-image-cloud-amd64",  # Debian's kernel for VMs: virtio drivers and the WireGuard module
    "busybox",  # tar in the initramfs, for the identity disk
    "mawk",
    "procps",
    "kmod",
)
"""What the image has, besides Debian's essential packages and apt. No wireguard-go: WireGuard runs in
the kernel here, and a missing module must not be hidden by a userspace fallback."""

IMAGE_PROGRAMS: dict[str, str] = {
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "unshare": "util-linux",
    "setpriv": "util-linux",
}
"""Program -> Debian package, needed to build an image."""

ROOTFS = "rootfs.img"
KERNEL = "vmlinuz"
INITRD = "initrd.img"
MANIFEST = "image.json"
MANIFEST_KIND = "wiremesh-vm-image"

DISK_MIN = 2 << 30
"""Smallest virtual size of the disk (the file is sparse: unused blocks take no space)."""

IDENTITY_DEVICE = "/dev/vdb"
"""The VM's second disk: a tar archive with its hostname, address, host key and authorized key."""

INITRAMFS_HOOK = r"""#!/bin/sh
# wiremesh lab: unpack this VM's identity (hostname, machine id, network config, ssh host key,
# authorized key) from its read-only second disk, a tar archive, into the root file system before
# systemd starts. Runs on every boot, so the files are the same after a reboot.
PREREQ=""
prereqs() { echo "$PREREQ"; }
case "$1" in prereqs) prereqs; exit 0;; esac
. /scripts/functions
dev=@DEVICE@
if [ ! -b "$dev" ]; then panic "wiremesh-identity: no identity disk $dev"; fi
tar -x -f "$dev" -C "${rootmnt}" || panic "wiremesh-identity: cannot unpack $dev"
"""

SSHD_CONFIG = """# wiremesh lab VM (written by the image builder)
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
# apply fans out many connections at once (sshd_config(5), MaxStartups)
MaxStartups 100:30:200
MaxSessions 100
# The default first choice, sntrup761x25519, costs about a second per login under QEMU's emulation.
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
"""

RECIPE = (
    r"""#!/bin/sh
# Customises the mmdebstrap chroot "$1" into a lab VM image (run by `wiremesh lab image build`).
set -eu
r=$1
# initramfs-tools: only the modules listed (else it inspects the machine that builds the image), and
# the hook that unpacks the identity disk.
mkdir -p "$r/etc/initramfs-tools/conf.d" "$r/etc/initramfs-tools/scripts/init-bottom"
echo MODULES=list > "$r/etc/initramfs-tools/conf.d/wiremesh-lab.conf"
printf 'virtio_pci\nvirtio_blk\nvirtio_net\n' > "$r/usr/share/initramfs-tools/modules.d/wiremesh-lab"
cat > "$r/etc/initramfs-tools/scripts/init-bottom/wiremesh-identity" <<'EOF'
"""
    + INITRAMFS_HOOK.replace("@DEVICE@", IDENTITY_DEVICE)
    + r"""EOF
chmod 755 "$r/etc/initramfs-tools/scripts/init-bottom/wiremesh-identity"
chroot "$r" update-initramfs -u -k all
printf '/dev/vda / ext4 rw,relatime,errors=remount-ro 0 1\n' > "$r/etc/fstab"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$r/etc/hosts"
# No DNS in the lab; the host name, machine id and host key come from the identity disk.
rm -f "$r/etc/resolv.conf" "$r/etc/ssh/ssh_host_"* "$r/var/lib/dbus/machine-id"
echo localhost > "$r/etc/hostname"
: > "$r/etc/machine-id"
cat > "$r/etc/ssh/sshd_config.d/wiremesh-lab.conf" <<'EOF'
"""
    + SSHD_CONFIG
    + r"""EOF
chroot "$r" systemctl enable systemd-networkd.service
# Nothing that wakes up on its own and takes CPU from the emulated machines.
chroot "$r" systemctl mask apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer \
  fstrim.timer e2scrub_all.timer e2scrub_reap.service getty@tty1.service
"""
)
"""The build recipe: a shell script run on the finished chroot (mmdebstrap ``--customize-hook``)."""

KERNEL_CMDLINE = "console=ttyS0 root=/dev/vda rw net.ifnames=0 fsck.mode=skip mitigations=off quiet"
"""How VMs boot: root on the first disk (mounted read-write at once, no fsck: the overlay is thrown away
after the lab), serial console, ``eth0`` as the interface name (as on namespace hosts)."""

Progress = Callable[[str], None]


def image_key() -> str:
    """The cache key of the image this wiremesh builds: suite and a digest of what goes into it."""
    recipe = json.dumps(
        {
            "builder": BUILDER_VERSION,
            "suite": SUITE,
            "packages": sorted(PACKAGES),
            "recipe": RECIPE,
            "cmdline": KERNEL_CMDLINE,
        },
        sort_keys=True,
    )
    return f"{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class Image:
    """A built image in the cache."""

    key: str
    dir: Path
    manifest: dict[str, Any]

    @property
    def rootfs(self) -> Path:
        """The raw ext4 disk image (the backing file of every VM's overlay)."""
        return self.dir / ROOTFS

    @property
    def kernel(self) -> Path:
        """The kernel, for ``qemu -kernel``."""
        return self.dir / KERNEL

    @property
    def initrd(self) -> Path:
        """The initramfs, for ``qemu -initrd``."""
        return self.dir / INITRD

    @property
    def disk_bytes(self) -> int:
        """Space the image takes on disk (allocated blocks: the disk image is sparse)."""
        return sum(p.stat().st_blocks * 512 for p in self.dir.iterdir() if p.is_file())

    @property
    def current(self) -> bool:
        """True if this is the image this wiremesh would build."""
        return self.key == image_key()


def check_vm_programs(*, build: bool) -> None:
    """Raise :class:`OperationError` naming the packages to install when programs for VMs are missing
    (``build``: also those that build the image)."""
    from wiremesh.lab.vm import VM_PROGRAMS

    wanted = {**VM_PROGRAMS, **(IMAGE_PROGRAMS if build else {})}
    missing = {name: pkg for name, pkg in wanted.items() if find_program(name) is None}
    if missing:
        packages = sorted(set(missing.values()))
        raise OperationError(
            "lab VMs need programs that are missing: "
            + ", ".join(f"{n} (package {p})" for n, p in missing.items()),
            hint=f"install them: apt-get install {' '.join(packages)} (scripts/install-deps does)",
        )


def apt_sources(etc: Path = Path("/etc/apt")) -> list[Path]:
    """This machine's apt source files that have entries: sources.list and sources.list.d/*.list|.sources."""
    found = []
    candidates = [etc / "sources.list"]
    if (etc / "sources.list.d").is_dir():
        candidates += sorted(
            p for p in (etc / "sources.list.d").iterdir() if p.suffix in (".list", ".sources")
        )
    for path in candidates:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        if any(line.strip() and not line.lstrip().startswith("#") for line in lines):
            found.append(path)
    return found


def find(key: str | None = None, cache: Path | None = None) -> Image | None:
    """The cached image ``key`` (default: the current one), or ``None``."""
    cache = cache or CACHE
    key = key or image_key()
    directory = cache / key
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND:
        return None
    image = Image(key, directory, manifest)
    if not all(p.is_file() for p in (image.rootfs, image.kernel, image.initrd)):
        return None
    return image


def list_images(cache: Path | None = None) -> list[Image]:
    """Every complete image in the cache, newest first."""
    cache = cache or CACHE
    if not cache.is_dir():
        return []
    images = [find(p.name, cache) for p in cache.iterdir() if p.is_dir() and p.name[0] != "."]
    found = [i for i in images if i is not None]
    return sorted(found, key=lambda i: str(i.manifest.get("built", "")), reverse=True)


@contextlib.contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """Hold the cache's build lock (one build or removal at a time on this machine)."""
    cache.mkdir(mode=0o755, parents=True, exist_ok=True)
    fd = os.open(cache / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def ensure(cache: Path | None = None, progress: Progress | None = None) -> Image:
    """The current image, built first if the cache does not have it."""
    found = find(cache=cache)
    return found if found is not None else build(cache=cache, progress=progress)


def build(
    cache: Path | None = None, *, force: bool = False, progress: Progress | None = None
) -> Image:
    """Build the current image into the cache (unless it is there already and not ``force``)."""
    require_root()
    check_vm_programs(build=True)
    cache = cache or CACHE
    say = progress or (lambda phase: None)
    key = image_key()
    with cache_lock(cache):
        _remove_stale_builds(cache)
        found = find(key, cache)
        if found is not None and not force:
            return found
        sources = apt_sources()
        if not sources:
            raise OperationError(
                "this machine has no apt sources (/etc/apt/sources.list or sources.list.d/)",
                hint="the VM image is built from the machine's own Debian mirror; configure apt first",
            )
        work = cache / f".build-{key}-{os.getpid()}"
        try:
            image = _build(cache, work, key, sources, say)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return image


def _remove_stale_builds(cache: Path) -> None:
    # Under the lock, any build directory belongs to a build that died (only the lock holder builds).
    for p in cache.iterdir():
        if p.name.startswith((".build-", ".remove-")) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)


def _build(cache: Path, work: Path, key: str, sources: list[Path], say: Progress) -> Image:
    started = time.monotonic()
    work.mkdir(mode=0o755)
    root = work / "root"
    recipe = work / "customize.sh"
    recipe.write_text(RECIPE)
    log = work / "build.log"
    say("installing packages (mmdebstrap)")
    argv = [
        *("setpriv", "--pdeathsig", "KILL", "--"),
        *("unshare", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc"),
        *("--propagation", "private", "--"),
        "mmdebstrap",
        "--variant=apt",
        "--mode=root",
        "--format=directory",
        "--include=" + ",".join(PACKAGES),
        *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "locale", "info")),
        f'--customize-hook=sh {recipe} "$1"',
        SUITE,
        str(root),
        *map(str, sources),
    ]
    _run(argv, log, "mmdebstrap")
    kernels = sorted((root / "boot").glob("vmlinuz-*"))
    initrds = sorted((root / "boot").glob("initrd.img-*"))
    if len(kernels) != 1 or len(initrds) != 1:
        raise OperationError(
            f"the image has {len(kernels)} kernels and {len(initrds)} initramfs images in /boot, "
            "not one of each",
            hint=f"see {log}",
        )
    release = kernels[0].name.removeprefix("vmlinuz-")
    out = work / "image"
    out.mkdir()
    shutil.copy2(kernels[0], out / KERNEL)
    shutil.copy2(initrds[0], out / INITRD)
    say("making the disk image (mkfs.ext4 -d)")
    used = sum(
        (p.lstat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink()), 0
    )
    size = max(DISK_MIN, (int(used * 1.3) + (1 << 30) + (1 << 28) - 1) >> 28 << 28)
    mkfs = ["mkfs.ext4", "-q", "-F", "-L", "wiremesh-lab", "-d", str(root), str(out / ROOTFS)]
    _run([*mkfs, f"{size >> 20}M"], log, "mkfs.ext4")
    manifest = {
        "kind": MANIFEST_KIND,
        "version": 1,
        "key": key,
        "builder": BUILDER_VERSION,
        "suite": SUITE,
        "packages": list(PACKAGES),
        "kernel": release,
        "cmdline": KERNEL_CMDLINE,
        "sources": [str(s) for s in sources],
        "built": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_seconds": round(time.monotonic() - started, 1),
        "disk_size": size,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    target = cache / key
    if target.exists():  # a forced rebuild: move the old one aside first, then drop it
        old = cache / f".remove-{key}-{os.getpid()}"
        target.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    out.rename(target)
    image = find(key, cache)
    assert image is not None
    say("done")
    return image


def _run(argv: list[str], log: Path, what: str) -> None:
    with log.open("a") as f:
        f.write(f"$ {' '.join(argv)}\n")
        f.flush()
        proc = subprocess.run(
            argv, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT, check=False
        )
    if proc.returncode != 0:
        tail = log.read_text()[-3000:].strip()
        raise OperationError(
            f"building the VM image failed: {what} exited {proc.returncode}:\n{tail}",
            hint="check the machine's apt sources and network (apt-get update), then try again: "
            "wiremesh lab image build",
        )


def remove(key: str | None = None, cache: Path | None = None) -> list[str]:
    """Remove image ``key`` (default: every image) from the cache; returns the keys removed.

    An image that a running lab's VMs use is refused (their overlays read it).
    """
    require_root()
    cache = cache or CACHE
    removed = []
    with cache_lock(cache):
        images = list_images(cache)
        if key is not None:
            images = [i for i in images if i.key == key]
            if not images:
                known = ", ".join(i.key for i in list_images(cache)) or "none"
                raise ValidationError(f"no VM image {key!r} in {cache}", hint=f"images: {known}")
        busy = images_in_use()
        for image in images:
            if image.key in busy:
                raise OperationError(
                    f"VM image {image.key} is used by the running lab in {busy[image.key]}",
                    hint=f"take the lab down first: wiremesh lab down --dir {busy[image.key]}",
                )
            aside = cache / f".remove-{image.key}-{os.getpid()}"
            image.dir.rename(aside)
            shutil.rmtree(aside)
            removed.append(image.key)
    return removed


def images_in_use() -> dict[str, Path]:
    """Image key -> directory of the running lab whose VMs use it."""
    from wiremesh.lab.state import LabState, MachineRecord

    record = MachineRecord.load()
    if record is None or not LabState.exists(record.dir):
        return {}
    try:
        state = LabState.load(record.dir)
    except ValidationError:
        return {}
    return {v.image: record.dir for v in state.vms}
