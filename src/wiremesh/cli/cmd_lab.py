"""``wiremesh lab``: emulated hosts in namespaces to try wiremesh on, on this machine (needs root)."""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from wiremesh.cli.context import Context
from wiremesh.cli.output import escape
from wiremesh.errors import OperationError
from wiremesh.lab.layout import GROUP_MAX, MAX_HOSTS, MAX_NATS, MAX_SITES
from wiremesh.lab.spec import MAX_VMS, VM_MEMORY

if TYPE_CHECKING:
    from wiremesh.lab import Lab, LabHost
    from wiremesh.lab.spec import LabSpec

DEFAULT_DIR = ".wiremesh-lab"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``wiremesh lab up|down|ls|exec|image``."""
    lab = sub.add_parser(
        "lab",
        help="emulated hosts on this machine to try a mesh on (root)",
        description="Emulated Linux hosts lab1..labN in namespaces on this machine, each with its own "
        "sshd and private /etc/wireguard, /etc/ssh, /run, /root and /tmp, on a bridge on "
        "198.51.100.0/24, optionally in sites with private links or behind NAT routers, and QEMU "
        "virtual machines with their own kernel (the WireGuard module) and systemd. Needs root. "
        "Only one lab runs on a machine at a time.",
    )
    lab_sub = lab.add_subparsers(dest="lab_command", metavar="SUBCOMMAND", parser_class=type(lab))
    lab_sub.required = True

    up = lab_sub.add_parser(
        "up",
        help="create lab hosts, an ssh_config and an inventory in DIR",
        description="Create hosts lab1..labM: the public hosts first, then each --site, then each "
        "--nat, in the order given, then the --vms. DIR receives an SSH identity, known_hosts, "
        "ssh_config and a ready inventory wiremesh.toml that describes what was built.",
    )
    up.add_argument(
        "-n",
        "--hosts",
        type=int,
        metavar="N",
        help=f"how many public hosts (1..{MAX_HOSTS}; 0 or omitted with --site/--nat/--vms); "
        f"at most {MAX_HOSTS} hosts in all",
    )
    up.add_argument(
        "--site",
        action="append",
        default=[],
        metavar="NAME:K",
        help=f"K hosts in site NAME: public hosts with a second link on a private bridge of the "
        f"site (repeatable, up to {MAX_SITES} sites of up to {GROUP_MAX} hosts)",
    )
    up.add_argument(
        "--nat",
        action="append",
        default=[],
        metavar="NAME:K",
        help=f"K hosts behind NAT router NAME, with no inbound reachability; ssh reaches them "
        f"through a port forward (repeatable, up to {MAX_NATS} routers)",
    )
    up.add_argument(
        "--ipv6",
        action="store_true",
        help="dual-stack underlay (2001:db8::/64) and IPv6 endpoints in the inventory",
    )
    up.add_argument(
        "--underlay-mtu",
        action="append",
        default=[],
        metavar="[HOST=]MTU",
        help="MTU of a host's underlay link(s), or of every host without HOST= (repeatable)",
    )
    up.add_argument(
        "--vms",
        type=int,
        default=0,
        metavar="K",
        help=f"K more public hosts that are QEMU VMs (up to {MAX_VMS}): Debian with the WireGuard "
        "kernel module and systemd; about 20-40 s to boot and 370 MiB of memory each. The VM image "
        "is built on first use (a minute or two; see `lab image`)",
    )
    up.add_argument(
        "--vm-memory",
        type=int,
        default=VM_MEMORY,
        metavar="MIB",
        help=f"guest RAM of each VM in MiB (default {VM_MEMORY})",
    )
    _dir_option(up)
    up.set_defaults(handler=run_up)

    down = lab_sub.add_parser(
        "down", help="remove the lab: processes, namespaces, links, mounts, sysctls, files"
    )
    _dir_option(down)
    down.set_defaults(handler=run_down)

    ls = lab_sub.add_parser("ls", help="list the lab hosts")
    _dir_option(ls)
    ls.add_argument("--json", action="store_true", help="print JSON for scripts")
    ls.set_defaults(handler=run_ls)

    ex = lab_sub.add_parser(
        "exec",
        help="run a command inside a lab host, as on its console",
        description="Run CMD as root inside HOST's namespaces (a login shell if CMD is omitted). "
        "The exit code of CMD is passed through.",
    )
    _dir_option(ex)
    ex.add_argument("host", metavar="HOST", help="a lab host, e.g. lab1")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD", help="the command and args")
    ex.set_defaults(handler=run_exec)

    image = lab_sub.add_parser(
        "image",
        help="the disk image of lab VMs: build, list, remove",
        description="Lab VMs run a Debian bookworm image built with mmdebstrap from this machine's "
        "apt sources (systemd, OpenSSH, wireguard-tools, the cloud kernel with the WireGuard "
        "module). It is built on first use and cached in /var/cache/wiremesh/images "
        "($WIREMESH_IMAGE_CACHE), keyed by its package list and the builder's version.",
    )
    image_sub = image.add_subparsers(
        dest="image_command", metavar="SUBCOMMAND", parser_class=type(image)
    )
    image_sub.required = True
    build = image_sub.add_parser("build", help="build the image now (nothing if it is cached)")
    build.add_argument("--force", action="store_true", help="build it again even if cached")
    build.set_defaults(handler=run_image_build)
    ils = image_sub.add_parser("ls", help="list the cached images")
    ils.add_argument("--json", action="store_true", help="print JSON for scripts")
    ils.set_defaults(handler=run_image_ls)
    rm = image_sub.add_parser("rm", help="remove cached images (all, or KEY)")
    rm.add_argument("key", nargs="?", metavar="KEY", help="the image to remove (default: all)")
    rm.set_defaults(handler=run_image_rm)


def _dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        default=DEFAULT_DIR,
        metavar="DIR",
        help=f"the lab directory (default: ./{DEFAULT_DIR})",
    )


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C during ``up``, so the half-made lab is removed again."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    try:
        old = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def spec_of(args: argparse.Namespace) -> LabSpec:
    """The lab ``lab up``'s options ask for (:class:`ValidationError`, exit 2, when they are wrong)."""
    from wiremesh.lab.spec import make_spec, parse_group, parse_mtu

    return make_spec(
        args.hosts,
        [parse_group(text, "--site") for text in args.site],
        [parse_group(text, "--nat") for text in args.nat],
        ipv6=args.ipv6,
        underlay_mtu=[parse_mtu(text) for text in args.underlay_mtu],
        vms=args.vms,
        vm_memory=args.vm_memory,
    )


def run_up(args: argparse.Namespace, ctx: Context) -> int:
    """``lab up``: create the lab, with a progress bar on a terminal, then say how to use it."""
    from wiremesh.lab import Lab

    directory = Path(args.dir)
    spec = spec_of(args)
    started = time.monotonic()
    with _sigterm_unwinds():
        if ctx.out.stderr_is_terminal:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=ctx.out.err_console,
                transient=True,
            ) as bar:
                task = bar.add_task("checking", total=spec.total)

                def progress(phase: str, done: int, total: int) -> None:
                    bar.update(task, description=phase, completed=done, total=total)

                lab = Lab.up_spec(directory, spec, progress=progress)
        else:
            lab = Lab.up_spec(directory, spec)
    elapsed = time.monotonic() - started

    d = shlex.quote(args.dir)
    first = lab.hosts[0].name
    out = ctx.out
    out.line(
        f"[green]lab up:[/green] {len(lab.hosts)} hosts ({escape(_summary(spec))}) "
        f"in {escape(str(lab.dir))} ({elapsed:.1f} s)"
    )
    out.line("next:")
    for what, cmd in (
        ("the inventory", f"wiremesh -f {d}/wiremesh.toml node ls"),
        ("ssh to a host", f"ssh -F {d}/ssh_config {first}"),
        ("a console", f"wiremesh lab exec --dir {d} {first} -- ip addr"),
        ("the hosts", f"wiremesh lab ls --dir {d}"),
        ("remove it all", f"wiremesh lab down --dir {d}"),
    ):
        out.line(f"  {what + ':':<15} {escape(cmd)}")
    return 0


def _summary(spec: LabSpec) -> str:
    parts = [f"{spec.public} public"] if spec.public else []
    parts += [f"site {g.name}: {g.count}" for g in spec.sites]
    parts += [f"behind NAT {g.name}: {g.count}" for g in spec.nats]
    parts += [f"{spec.vms} VM{'s' if spec.vms > 1 else ''}"] if spec.vms else []
    if spec.ipv6:
        parts.append("IPv6")
    return ", ".join(parts)


def run_down(args: argparse.Namespace, ctx: Context) -> int:
    """``lab down``: remove everything; a missing lab is not an error (nothing to do)."""
    from wiremesh.lab import down_dir
    from wiremesh.lab.prereq import require_root

    require_root()
    directory = Path(args.dir)
    if down_dir(directory):
        ctx.out.line(f"lab in {escape(str(directory.absolute()))} is down")
    else:
        ctx.out.info(f"no lab in {escape(str(directory.absolute()))}; nothing to do")
    return 0


def run_ls(args: argparse.Namespace, ctx: Context) -> int:
    """``lab ls``: hosts with role, addresses and MTU, whether the host and its sshd run (and, with
    ``--json``, their netns, PID 1 and where ssh reaches them)."""
    from wiremesh.lab import Lab
    from wiremesh.lab.prereq import require_root

    require_root()
    lab = Lab.open(Path(args.dir))
    rows = []
    for h in lab.hosts:
        running = lab.is_running(h.name)
        rows.append(
            {
                "name": h.name,
                "kind": h.kind,
                "role": h.role,
                "group": h.group,
                "underlay_ip": str(h.underlay_ip),
                "public_ip": _text(h.public_ip),
                "private_ip": _text(h.private_ip),
                "underlay6": _text(h.underlay6),
                "nat_ip": _text(h.nat_ip),
                "mtu": h.mtu,
                "ssh": f"{h.ssh_address}:{h.ssh_port}",
                "pid": h.pid,
                "netns": h.netns,
                "tap": h.tap,
                "running": running,
                "sshd": running and lab.sshd_up(h.name),
            }
        )
    if args.json:
        ctx.out.json({"dir": str(lab.dir), "complete": lab.complete, "hosts": rows})
        return 0
    if not lab.complete:
        ctx.out.warn(
            f"the lab in {escape(str(lab.dir))} is incomplete (its `up` did not finish); "
            f"remove it with: wiremesh lab down --dir {escape(shlex.quote(args.dir))}"
        )
    from rich.table import Table

    table = Table(title=f"lab in {escape(str(lab.dir))}", title_justify="left")
    columns = ["HOST", "KIND", "ROLE", "PUBLIC", "PRIVATE"]
    ipv6 = lab.spec.ipv6
    columns += ["IPV6"] if ipv6 else []
    columns += ["MTU", "UP", "SSHD"]
    for column in columns:
        table.add_column(column)
    for h, r in zip(lab.hosts, rows, strict=True):
        cells = [str(r["name"]), "VM" if h.kind == "vm" else "netns", escape(_role(h))]
        cells += [escape(_public(h)), str(r["private_ip"] or "-")]
        cells += [str(r["underlay6"] or "-")] if ipv6 else []
        cells += [
            str(r["mtu"]),
            "yes" if r["running"] else "[red]no[/red]",
            "yes" if r["sshd"] else "[red]no[/red]",
        ]
        table.add_row(*cells)
    ctx.out.table(table)
    return 0


def _text(value: object | None) -> str | None:
    return None if value is None else str(value)


def _role(h: LabHost) -> str:
    return f"{h.role} {h.group}" if h.group else h.role


def _public(h: LabHost) -> str:
    if h.public_ip is not None:
        return str(h.public_ip)
    return f"NAT {h.nat_ip}"  # behind a NAT: the address the world sees


def run_exec(args: argparse.Namespace, ctx: Context) -> int:
    """``lab exec HOST -- CMD``: run CMD in the host with the caller's terminal; pass its exit code."""
    from wiremesh.lab import Lab
    from wiremesh.lab.host import console_env
    from wiremesh.lab.prereq import require_root

    require_root()
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        cmd = ["/bin/bash", "-l"] if os.path.exists("/bin/bash") else ["/bin/sh", "-l"]
    lab = Lab.open(Path(args.dir))
    if lab.host(args.host).kind == "vm":
        return _exec_vm(lab, args.host, list(args.cmd), ctx)
    argv = lab.exec_argv(args.host, cmd)
    term = {"TERM": ctx.env["TERM"]} if "TERM" in ctx.env else {}
    try:
        proc = subprocess.run(argv, env=console_env(term), check=False)
    except OSError as exc:
        raise OperationError(f"cannot run nsenter: {exc}", hint="install util-linux") from exc
    if proc.returncode < 0:  # killed by a signal: report it the way a shell does
        return 128 - proc.returncode
    return proc.returncode


def _exec_vm(lab: Lab, name: str, cmd: list[str], ctx: Context) -> int:
    """``lab exec`` on a VM: over ssh with the lab's ssh_config (a VM has no console to enter)."""
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    # A terminal for an interactive command or shell, as on a console.
    argv = lab.vm_ssh_argv(name, cmd or None, tty=os.isatty(0))
    try:
        proc = subprocess.run(argv, check=False)
    except OSError as exc:
        raise OperationError(f"cannot run ssh: {exc}", hint="install openssh-client") from exc
    if proc.returncode < 0:
        return 128 - proc.returncode
    return proc.returncode


def _image_progress(ctx: Context) -> Callable[[str], None]:
    def say(phase: str) -> None:
        ctx.out.info(f"VM image: {phase}")

    return say


def run_image_build(args: argparse.Namespace, ctx: Context) -> int:
    """``lab image build``: build the VM image into the cache (unless it is there)."""
    from wiremesh.lab import image

    started = time.monotonic()
    had = image.find()
    built = image.build(force=args.force, progress=_image_progress(ctx))
    if had is not None and not args.force:
        ctx.out.line(f"VM image {built.key} is cached in {escape(str(built.dir))}; nothing to do")
        return 0
    ctx.out.line(
        f"[green]built[/green] VM image {built.key} (kernel {built.manifest.get('kernel')}, "
        f"{built.disk_bytes / 2**20:.0f} MiB) in {time.monotonic() - started:.0f} s: "
        f"{escape(str(built.dir))}"
    )
    return 0


def run_image_ls(args: argparse.Namespace, ctx: Context) -> int:
    """``lab image ls``: the cached images, which one is current, which a running lab uses."""
    from wiremesh.lab import image

    images = image.list_images()
    busy = image.images_in_use()
    rows = [
        {
            "key": i.key,
            "current": i.current,
            "kernel": i.manifest.get("kernel"),
            "built": i.manifest.get("built"),
            "build_seconds": i.manifest.get("build_seconds"),
            "disk_bytes": i.disk_bytes,
            "path": str(i.dir),
            "used_by": str(busy[i.key]) if i.key in busy else None,
        }
        for i in images
    ]
    if args.json:
        ctx.out.json({"cache": str(image.CACHE), "current": image.image_key(), "images": rows})
        return 0
    if not rows:
        ctx.out.info(
            f"no VM image in {escape(str(image.CACHE))}; `wiremesh lab image build` makes one "
            "(`lab up --vms` does too)"
        )
        return 0
    from rich.table import Table

    table = Table(title=f"VM images in {escape(str(image.CACHE))}", title_justify="left")
    for column in ("KEY", "CURRENT", "KERNEL", "BUILT", "SIZE", "USED BY"):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["key"]),
            "yes" if r["current"] else "no",
            escape(str(r["kernel"])),
            escape(str(r["built"])),
            f"{int(str(r['disk_bytes'])) / 2**20:.0f} MiB",
            escape(str(r["used_by"] or "-")),
        )
    ctx.out.table(table)
    return 0


def run_image_rm(args: argparse.Namespace, ctx: Context) -> int:
    """``lab image rm [KEY]``: remove cached images (refused for one a running lab uses)."""
    from wiremesh.lab import image

    removed = image.remove(args.key)
    if removed:
        ctx.out.line("removed VM image " + ", ".join(removed))
    else:
        ctx.out.info("no VM image to remove")
    return 0
