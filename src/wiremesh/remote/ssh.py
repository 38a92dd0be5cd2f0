"""SSH transport (asyncssh): one connection per host per run, every host command through one wrapper.

Connections honour the OpenSSH client config (``--ssh-config``, the inventory's ``ssh_config``, or
``~/.ssh/config``): HostName, User, Port, IdentityFile, ProxyJump, UserKnownHostsFile... as far as
asyncssh supports them. Host keys are checked strictly against known_hosts; an unknown key is trusted
only with ``--accept-new-host-keys`` (and then recorded), a changed key never.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

import asyncssh

from wiremesh.errors import OperationError
from wiremesh.model.endpoint import SshTarget

log = logging.getLogger("wiremesh.ssh")


@dataclass(frozen=True)
class SshOptions:
    """How to connect."""

    config: Path | None = None  # None: ~/.ssh/config, as OpenSSH does
    accept_new_host_keys: bool = False
    connect_timeout: float = 15.0
    command_timeout: float = 120.0


class HostError(OperationError):
    """Something failed on or toward one host; ``node`` names it."""

    def __init__(self, node: str, message: str, hint: str | None = None) -> None:
        super().__init__(f"{node}: {message}", hint)
        self.node = node
        self.reason = message


LINE_LIMIT = 200
"""At most this many characters of one line of a host's error output go into a message."""


def error_summary(stderr: str) -> str:
    """The lines of a failed command's error output that say what went wrong, bounded.

    The last line alone is often the cleanup, not the failure: wg-quick echoes each command it runs
    as ``[#] ...`` and, after a failing one, runs ``ip link delete`` (its last line). So: the last
    line that is not such an echo (the error), the echo just before it (the command that failed),
    and the last line, each cut to :data:`LINE_LIMIT` characters. Output without echoes gives its
    first line (the first error; later ones often follow from it) and its last.
    """
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if not lines:
        return "no error output"
    echoed = [i for i, line in enumerate(lines) if line.startswith("[#]")]
    errors = [i for i, line in enumerate(lines) if not line.startswith("[#]")]
    if echoed and errors:
        error = errors[-1]
        picked = [error - 1, error] if error > 0 and lines[error - 1].startswith("[#]") else [error]
    else:
        picked = [0]
    picked.append(len(lines) - 1)
    chosen = [lines[i] for i in sorted(set(picked))]
    cut = [line if len(line) <= LINE_LIMIT else line[:LINE_LIMIT] + "…" for line in chosen]
    return " | ".join(cut)


class HostCommandError(HostError):
    """A command on a host exited non-zero (innernet's ``cmd()``, sshuttle's ``ipt()``)."""

    def __init__(self, node: str, step: str, command: str, status: int | None, stderr: str) -> None:
        super().__init__(node, f"{step} failed (exit {status}): {error_summary(stderr)}")
        self.step = step
        self.command = command
        self.status = status
        self.stderr = stderr


@dataclass(frozen=True)
class CommandResult:
    """What a host command returned."""

    status: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class ResolvedTarget:
    """A target after the OpenSSH config: where we really connect, and where host keys live."""

    host: str
    port: int
    user: str
    known_hosts: tuple[str, ...]


def resolve(target: SshTarget, options: SshOptions) -> ResolvedTarget:
    """Apply the OpenSSH config to ``target`` as asyncssh will (HostName, Port, User...)."""
    from asyncssh.config import SSHClientConfig

    paths: list[Path] = []
    if options.config is not None:
        paths = [options.config]
    else:
        default = Path("~/.ssh/config").expanduser()
        if default.is_file():
            paths = [default]
    local_user = getpass.getuser()
    config = SSHClientConfig.load(
        None,
        paths,
        False,
        False,
        False,
        local_user,
        target.user if target.user else (),
        str(target.host),
        target.port if target.port else (),
    )
    host = str(config.get("Hostname", str(target.host)))
    port = int(str(config.get("Port", target.port or 22)))
    user = str(config.get("User", target.user or local_user))
    files = config.get("UserKnownHostsFile")
    known = tuple(str(Path(f).expanduser()) for f in files) if isinstance(files, list) else ()
    if not known:
        known = (str(Path("~/.ssh/known_hosts").expanduser()),)
    return ResolvedTarget(host, port, user, known)


def _known_state(resolved: ResolvedTarget, alias: str) -> str | None:
    """The known_hosts file that lists the host (its key has then changed), or None (unknown)."""
    for name in resolved.known_hosts:
        if not Path(name).is_file():
            continue
        try:
            known = asyncssh.read_known_hosts(name)
        except (OSError, ValueError):
            continue
        for host in {resolved.host, alias}:
            keys = known.match(host, resolved.host, resolved.port if resolved.port != 22 else None)
            if keys[0] or keys[1]:
                return name
    return None


def _record_host_key(resolved: ResolvedTarget, key: asyncssh.SSHKey) -> Path:
    path = Path(resolved.known_hosts[0])
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    name = resolved.host if resolved.port == 22 else f"[{resolved.host}]:{resolved.port}"
    line = f"{name} {key.export_public_key().decode().strip()}\n"
    with path.open("a", encoding="ascii") as handle:
        handle.write(line)
    return path


class Session:
    """An open SSH connection to one node's host."""

    def __init__(
        self, node: str, target: SshTarget, conn: asyncssh.SSHClientConnection, options: SshOptions
    ) -> None:
        self.node = node
        self.target = target
        self._conn = conn
        self._options = options

    async def run(
        self,
        script: str,
        *,
        step: str,
        stdin: str | None = None,
        check: bool = True,
        timeout: float | None = None,
    ) -> CommandResult:
        """Run ``script`` with ``sh -c`` as the login user; raise :class:`HostCommandError` on failure.

        ``step`` names what the command does, for logs and errors. Commands carry no secrets: private
        keys are made and used on the host, never sent or received.
        """
        command = "sh -c " + shlex.quote(script)
        started = time.monotonic()
        log.debug("%s: %s", self.node, step)
        try:
            result = await asyncio.wait_for(
                self._conn.run(command, input=stdin, check=False),
                timeout or self._options.command_timeout,
            )
        except TimeoutError:
            raise HostError(
                self.node,
                f"{step} timed out after {timeout or self._options.command_timeout:.0f} s",
                "the host may be overloaded; try again, or check it by hand",
            ) from None
        except (asyncssh.Error, OSError) as exc:
            raise HostError(self.node, f"{step}: connection lost ({exc})") from None
        status = result.exit_status if result.exit_status is not None else -1
        stdout = str(result.stdout or "")
        stderr = str(result.stderr or "")
        log.debug("%s: %s -> %s in %.3f s", self.node, step, status, time.monotonic() - started)
        if check and status != 0:
            raise HostCommandError(self.node, step, script, status, stderr)
        return CommandResult(status, stdout, stderr)

    @property
    def command_timeout(self) -> float:
        """Seconds a command may take (``--command-timeout``)."""
        return self._options.command_timeout

    async def start(self, script: str, *, step: str) -> asyncssh.SSHClientProcess[str]:
        """Start ``script`` with ``sh -c`` and return the running process (its channel stays open
        until closed: used for the host lock, :mod:`wiremesh.remote.lock`)."""
        log.debug("%s: %s (started)", self.node, step)
        try:
            return await self._conn.create_process("sh -c " + shlex.quote(script))
        except (asyncssh.Error, OSError) as exc:
            raise HostError(self.node, f"{step}: connection lost ({exc})") from None

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


def _keyscan_name(resolved: ResolvedTarget) -> str:
    """How known_hosts names the host (``[host]:port`` for a port other than 22)."""
    return resolved.host if resolved.port == 22 else f"'[{resolved.host}]:{resolved.port}'"


def _where(resolved: ResolvedTarget) -> str:
    host = f"[{resolved.host}]" if ":" in resolved.host else resolved.host
    return f"{resolved.user}@{host}:{resolved.port}"


async def _host_key_problem(
    node: str, target: SshTarget, options: SshOptions, kwargs: dict[str, object]
) -> asyncssh.SSHClientConnection:
    """An unverifiable host key: refuse a changed key; trust an unknown one only if allowed."""
    resolved = resolve(target, options)
    where = _where(resolved)
    # Name the known_hosts file in use (the config's UserKnownHostsFile), and commands that use it:
    # a plain 'ssh host' would read and write ~/.ssh/known_hosts instead.
    listed = _known_state(resolved, str(target.host))
    if listed is not None:
        raise HostError(
            node,
            f"the SSH host key of {where} has CHANGED since it was recorded in {listed}",
            f"if the host was reinstalled, remove the old key (ssh-keygen -f {listed} -R "
            f"{_keyscan_name(resolved)}) and connect again; otherwise someone may be intercepting "
            "the connection",
        )
    if not options.accept_new_host_keys:
        known = resolved.known_hosts[0]
        user = f"{target.user}@" if target.user else ""
        port = f" -p {target.port}" if target.port else ""
        config = f" -F {options.config}" if options.config is not None else ""
        login = f"ssh{config}{port} {user}{target.host}"
        raise HostError(
            node,
            f"the SSH host key of {where} is not in {' or '.join(resolved.known_hosts)}",
            f"check the host's key fingerprint and add it to {known} (log in once with "
            f"'{login}', or 'ssh-keyscan -p {resolved.port} {resolved.host} >> {known}' after "
            "comparing the fingerprint), or run again with --accept-new-host-keys to trust and "
            "record unknown keys",
        )
    return await _connect_accepting(node, target, resolved, kwargs, where)


async def connect(node: str, target: SshTarget, options: SshOptions) -> Session:
    """Open a connection to ``target``; errors say what failed and how to fix it.

    The OpenSSH config is applied by asyncssh itself; wiremesh reads it again only to explain an
    error (parsing it once more per host cost ~20 ms each on 30 hosts).
    """
    kwargs: dict[str, object] = {
        "config": [str(options.config)] if options.config else (),
        "connect_timeout": options.connect_timeout,
    }
    if target.user:
        kwargs["username"] = target.user
    if target.port:
        kwargs["port"] = target.port
    try:
        conn = await asyncssh.connect(str(target.host), **kwargs)
    except asyncssh.HostKeyNotVerifiable:
        conn = await _host_key_problem(node, target, options, kwargs)
    except asyncssh.PermissionDenied:
        raise HostError(
            node,
            f"SSH login to {_where(resolve(target, options))} was refused (no accepted key)",
            "check the node's 'ssh' target, the IdentityFile in your ssh config, and the host's "
            "authorized_keys",
        ) from None
    except TimeoutError:
        raise HostError(
            node,
            f"cannot connect to {_where(resolve(target, options))}: timed out after "
            f"{options.connect_timeout:.0f} s",
            "check that the host is up and its SSH port is reachable from here",
        ) from None
    except FileNotFoundError as exc:
        resolved = resolve(target, options)
        if not any(Path(f).is_file() for f in resolved.known_hosts):
            # No known_hosts file at all: every key is unknown (asyncssh fails on the file).
            conn = await _host_key_problem(node, target, options, kwargs)
        else:
            raise HostError(node, f"cannot connect to {_where(resolved)}: {exc}") from None
    except (OSError, asyncssh.Error) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise HostError(
            node,
            f"cannot connect to {_where(resolve(target, options))}: {reason}",
            "check that the host is up and sshd runs on it (and the node's 'ssh' target)",
        ) from None
    return Session(node, target, conn, options)


async def _connect_accepting(
    node: str, target: SshTarget, resolved: ResolvedTarget, kwargs: dict[str, object], where: str
) -> asyncssh.SSHClientConnection:
    try:
        conn = await asyncssh.connect(str(target.host), known_hosts=None, **kwargs)
    except (OSError, asyncssh.Error) as exc:
        raise HostError(node, f"cannot connect to {where}: {exc}") from None
    key = conn.get_server_host_key()
    if key is not None:
        path = _record_host_key(resolved, key)
        log.info("%s: recorded new host key of %s in %s", node, where, path)
    return conn


class Releasable(Protocol):
    """Something held on a host until released (a host lock)."""

    def release(self) -> None: ...


class Sessions:
    """The open sessions of one run; closes them all on exit."""

    def __init__(self) -> None:
        self.open: dict[str, Session] = {}
        self.locks: dict[str, Releasable] = {}  # host locks held by this run (released first)

    async def __aenter__(self) -> Sessions:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for lock in self.locks.values():
            lock.release()
        self.locks.clear()
        for session in self.open.values():
            session.close()
        self.open.clear()
