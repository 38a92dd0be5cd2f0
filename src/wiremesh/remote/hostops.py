"""Host operations: carry out a plan on one host over its session (the thin adapter around wg/ip)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from wiremesh.codec.observe import parse_observation
from wiremesh.errors import ValidationError
from wiremesh.model.host import ObservedHost, WantedHost
from wiremesh.model.keys import PublicKey
from wiremesh.model.plan import (
    BringUp,
    Change,
    CreateKey,
    EnableForwarding,
    EnableService,
    HostPlan,
    LinkUp,
    SetAddress,
    SetHostsBlock,
    SetMtu,
    SetRoute,
    TearDown,
    WriteConfig,
    WriteFile,
)
from wiremesh.remote import scripts
from wiremesh.remote.ssh import HostCommandError, HostError, Session

log = logging.getLogger("wiremesh.apply")

PEER_CHANGES = ("AddPeer", "RemovePeer", "UpdatePeer", "SetListenPort")


async def observe(
    session: Session,
    interface: str,
    mesh: str = "mesh",
    targets: tuple[str, ...] = (),
    files: tuple[str, ...] = (),
    full: bool = True,
) -> ObservedHost:
    """Read the host's state (one round trip, read-only); ``full=False`` for status only."""
    script = scripts.observe(interface, mesh, targets, files, full)
    result = await session.run(script, step="reading the host's state")
    try:
        return parse_observation(interface, result.stdout)
    except ValidationError as exc:
        raise HostError(
            session.node, f"unexpected answer while reading its state: {exc.message}"
        ) from None


async def ensure_key(session: Session, interface: str) -> PublicKey:
    """Make the host's private key there if it has none; return only its public key."""
    result = await session.run(scripts.ensure_key(interface), step="creating the private key")
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if not lines:
        raise HostError(session.node, "creating the private key printed no public key")
    try:
        return PublicKey.parse(lines[-1].strip(), "public key from the host")
    except ValidationError as exc:
        raise HostError(session.node, exc.message) from None


@dataclass(frozen=True)
class Outcome:
    """What apply did on one host."""

    node: str
    done: tuple[Change, ...]
    rolled_back: bool = False


def _ip_args(change: Change, interface: str) -> list[str]:
    if isinstance(change, SetAddress):
        family = "-6" if change.address.version == 6 else "-4"
        return [
            family,
            "address",
            "add" if change.add else "del",
            str(change.address),
            "dev",
            interface,
        ]
    if isinstance(change, SetMtu):
        return ["link", "set", "dev", interface, "mtu", str(change.new)]
    if isinstance(change, SetRoute):
        family = "-6" if change.network.version == 6 else "-4"
        verb = "replace" if change.add else "del"
        return [family, "route", verb, str(change.network), "dev", interface]
    if isinstance(change, LinkUp):
        return ["link", "set", "dev", interface, "up"]
    raise AssertionError(change)


async def execute(
    session: Session, plan: HostPlan, wanted: WantedHost, observed: ObservedHost, mesh: str
) -> Outcome:
    """Carry out ``plan`` on the host, in order: config file, interface, addresses/MTU/routes, service.

    Peers of a running interface change through ``wg syncconf`` (only the listed peers change); if the
    new config does not load, the previous one is put back and loaded again, and the error raised.
    """
    interface = wanted.device.interface.name
    done: list[Change] = []
    if plan.empty:
        return Outcome(plan.node, ())
    for change in plan.of(CreateKey):
        await ensure_key(session, interface)
        done.append(change)
    wrote = False
    for change in plan.of(WriteConfig):
        await session.run(
            scripts.write_config(interface), step="writing the config", stdin=wanted.config_text
        )
        wrote = True
        done.append(change)
    peer_changes = [c for c in plan.changes if type(c).__name__ in PEER_CHANGES]
    try:
        for change in plan.of(BringUp):
            await session.run(scripts.bring_up(interface), step=f"wg-quick up {interface}")
            done.append(change)
        for change in plan.of(LinkUp):
            await session.run(
                scripts.ip_command(_ip_args(change, interface)), step=f"setting {interface} up"
            )
            done.append(change)
        if peer_changes or (wrote and observed.device is not None and not plan.of(BringUp)):
            await session.run(scripts.sync(interface), step="wg syncconf")
            done.extend(peer_changes)
    except HostCommandError as exc:
        if wrote:
            was_up = observed.device is not None
            await session.run(scripts.rollback(interface, was_up), step="rolling back", check=False)
            raise HostError(
                session.node,
                f"{exc.reason}; rolled back to the previous config",
                "check the config wiremesh rendered ('wiremesh show NODE') and the host's wg tools",
            ) from None
        raise
    for change in plan.changes:
        if isinstance(change, SetAddress | SetMtu | SetRoute):
            await session.run(
                scripts.ip_command(_ip_args(change, interface)), step=change.describe()
            )
            done.append(change)
    for change in plan.of(SetHostsBlock):
        await session.run(
            scripts.write_hosts_block(mesh),
            step="updating /etc/hosts",
            stdin="\n".join(wanted.hosts_block) + "\n",
        )
        done.append(change)
    for change in plan.of(EnableForwarding):
        assert isinstance(change, EnableForwarding)
        await session.run(
            scripts.enable_forwarding(change.ipv4, change.ipv6), step="enabling forwarding"
        )
        done.append(change)
    texts = {f.path: f for f in wanted.files}
    for change in plan.of(WriteFile):
        assert isinstance(change, WriteFile)
        file = texts[change.path]
        await session.run(
            scripts.write_file(file.path, file.mode), step=f"writing {file.path}", stdin=file.text
        )
        done.append(change)
    for change in plan.of(EnableService):
        await session.run(scripts.enable_service(interface), step="enabling wg-quick@" + interface)
        done.append(change)
    log.info("%s: %d change(s) applied", plan.node, len(done))
    return Outcome(plan.node, tuple(done))


async def tear_down(session: Session, interface: str, mesh: str) -> Outcome:
    """Take a removed node out of the mesh on its host."""
    await session.run(scripts.remove_hosts_block(mesh), step="removing the /etc/hosts block")
    await session.run(scripts.tear_down(interface), step="taking the interface down")
    return Outcome(session.node, (TearDown(interface),))
