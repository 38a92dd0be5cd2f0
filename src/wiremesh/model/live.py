"""Live changes of a running interface: a host plan's changes as ``wg set`` and ``ip`` steps (pure).

``wg syncconf`` is not used on a running interface. It re-sends *every* peer of the file with "replace
allowed IPs" (wireguard-tools ``config.c`` sets ``WGPEER_REPLACE_ALLOWEDIPS`` on each ``[Peer]`` it
reads), and the kernel module and wireguard-go carry that out as "remove all of the peer's allowed
IPs, then insert them again": a packet routed in between finds no peer. Measured in the lab, 200
no-op syncconf runs lost a 2 ms ping to a peer whose settings never changed.

So only the peers the plan names are touched, each with the settings that change, in an order that
never leaves a wanted prefix without its peer:

1. the listen port;
2. new peers, with their allowed IPs. Inserting a prefix that another peer holds *moves* it (a prefix
   has one owner: kernel ``allowedips.c`` and wireguard-go ``allowedips.go`` overwrite the node's
   peer in place), so a relayed pair's route moves to its direct peer with no moment without one;
3. allowed IPs added to existing peers: with ``+prefix`` where the host's wg supports incremental
   changes (wireguard-tools ≥ v1.0.20250521; "+" only clears the replace flag, which every kernel
   and wireguard-go honour), else by setting the peer's whole new list (older wg(8) can only
   replace). Only that one peer is rewritten then, never the others;
4. endpoints, keepalives, preshared keys (none of which touch allowed IPs);
5. allowed IPs that leave a peer without moving to another one: they are moved to a spare peer with
   a random, throwaway public key, which is then removed in the same ``wg set``. The peer's other
   prefixes are never removed, so they have no gap (``wg set peer X allowed-ips`` would replace all);
6. removed peers, last: whatever of their prefixes another peer takes has moved in step 2 or 3.

A NAT pair's move between its relay and the direct path (or back) cannot be lossless by order alone:
WireGuard uses one table both to choose the peer a packet goes to and to accept a packet's source
address from the peer it came from. When A has moved B's address to B's own entry while B still routes
A's through the relay, A's direct packets arrive at B from a peer B does not accept A's address from,
and B's relayed ones reach A from the relay, which A no longer accepts B's address from. Each host's
move is atomic (step 2 and 3: no moment without a route), so what can be lost is what crosses between
the two hosts' moves: the two hosts of a pair therefore switch at one agreed instant
(:func:`switch_together`), and only packets in flight on the old path at that instant can be lost.

New addresses are added before the peers change; routes, MTU and old addresses change after. Every
``ip`` step carries its own undo, and the ``wg`` steps are undone together from a snapshot of the
running configuration (see :func:`wiremesh.remote.live.live_script`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from wiremesh.model.addressing import IPNetwork
from wiremesh.model.changes import (
    AddPeer,
    Change,
    LinkUp,
    RemovePeer,
    SetAddress,
    SetListenPort,
    SetMtu,
    SetPrivateKey,
    SetRoute,
    UpdatePeer,
)
from wiremesh.model.keys import PublicKey


@dataclass(frozen=True)
class WgStep:
    """One ``wg set <interface> ARGS...``; ``what`` names it in errors."""

    what: str
    args: tuple[str, ...]


@dataclass(frozen=True)
class IpStep:
    """One ``ip ARGS...`` and the ``ip`` command that undoes it (None: nothing to undo)."""

    what: str
    args: tuple[str, ...]
    undo: tuple[str, ...] | None


Step = WgStep | IpStep


def _csv(nets: Iterable[IPNetwork], prefix: str = "") -> str:
    return ",".join(prefix + str(n) for n in nets)


def _family(net: object) -> str:
    return "-6" if getattr(net, "version", 4) == 6 else "-4"


def _ip_step(change: Change, interface: str) -> IpStep:
    if isinstance(change, SetAddress):
        family = _family(change.address)
        add = ("address", "add", str(change.address), "dev", interface)
        delete = ("address", "del", str(change.address), "dev", interface)
        args, undo = (add, delete) if change.add else (delete, add)
        return IpStep(change.describe(), (family, *args), (family, *undo))
    if isinstance(change, SetMtu):
        mtu = ("link", "set", "dev", interface, "mtu")
        old = (*mtu, str(change.old)) if change.old else None
        return IpStep(change.describe(), (*mtu, str(change.new)), old)
    if isinstance(change, SetRoute):
        family = _family(change.network)
        add = ("route", "replace", str(change.network), "dev", interface)
        delete = ("route", "del", str(change.network), "dev", interface)
        args, undo = (add, delete) if change.add else (delete, add)
        return IpStep(change.describe(), (family, *args), (family, *undo))
    if isinstance(change, LinkUp):
        return IpStep(
            change.describe(),
            ("link", "set", "dev", interface, "up"),
            ("link", "set", "dev", interface, "down"),
        )
    raise AssertionError(change)


def _key(change: AddPeer | RemovePeer | UpdatePeer) -> str:
    if change.public_key is None:  # plans with pending keys are never carried out live
        raise ValueError(f"peer {change.name} has no known public key")
    return str(change.public_key)


def wg_steps(changes: Sequence[Change], incremental: bool, spare: PublicKey) -> tuple[WgStep, ...]:
    """The ``wg set`` steps for a plan's peer and interface changes, in the lossless order above.

    ``incremental``: the host's wg supports ``allowed-ips +prefix``. ``spare`` is a throwaway public
    key for prefixes that leave a peer (step 5); it must not be a key of the mesh.
    """
    out: list[WgStep] = []
    for change in changes:
        if isinstance(change, SetPrivateKey):
            out.append(WgStep(change.describe(), ("private-key", change.path)))
    for change in changes:
        if isinstance(change, SetListenPort):
            out.append(WgStep(change.describe(), ("listen-port", str(change.new))))
    moved: set[IPNetwork] = set()  # prefixes inserted into some peer by this plan
    for change in changes:
        if isinstance(change, AddPeer) and change.key_known:
            new = ["peer", _key(change)]
            if change.endpoint is not None:
                new += ["endpoint", str(change.endpoint)]
            if change.keepalive:
                new += ["persistent-keepalive", str(change.keepalive)]
            if change.allowed_ips:
                new += ["allowed-ips", _csv(change.allowed_ips)]
                moved.update(change.allowed_ips)
            out.append(WgStep(change.describe(), tuple(new)))
    replaced: set[str] = set()  # peers whose whole list was set (older wg)
    updates = [c for c in changes if isinstance(c, UpdatePeer)]
    for change in updates:
        if change.setting != "allowed IPs":
            continue
        added = [n for n in change.allowed_ips if n not in change.old_allowed_ips]
        if not added:
            continue
        moved.update(added)
        if incremental:
            value = _csv(added, "+")
        else:
            value = _csv(change.allowed_ips)
            replaced.add(_key(change))
        out.append(WgStep(change.describe(), ("peer", _key(change), "allowed-ips", value)))
    for change in updates:
        if change.setting == "endpoint" and change.endpoint is not None:
            args: tuple[str, ...] = ("endpoint", str(change.endpoint))
        elif change.setting == "keepalive":
            args = ("persistent-keepalive", str(change.keepalive) if change.keepalive else "off")
        elif change.setting == "preshared key":
            args = ("preshared-key", "/dev/null")  # wg(8): /dev/null removes the key
        else:
            continue
        out.append(WgStep(change.describe(), ("peer", _key(change), *args)))
    leaving: list[IPNetwork] = []
    for change in updates:
        if change.setting != "allowed IPs" or _key(change) in replaced:
            continue
        leaving += [
            n
            for n in change.old_allowed_ips
            if n not in change.allowed_ips and n not in moved and n not in leaving
        ]
    if leaving:
        what = f"remove allowed IPs {', '.join(map(str, leaving))}"
        spare_key = str(spare)
        out.append(
            WgStep(
                what, ("peer", spare_key, "allowed-ips", _csv(leaving), "peer", spare_key, "remove")
            )
        )
    for change in changes:
        if isinstance(change, RemovePeer):
            out.append(WgStep(change.describe(), ("peer", _key(change), "remove")))
    return tuple(out)


@dataclass(frozen=True)
class LiveSteps:
    """Everything a running interface needs, in order: ``before`` the peers change (link up,
    new addresses), the ``wg`` steps, then ``after`` (routes, old addresses, MTU)."""

    before: tuple[IpStep, ...]
    wg: tuple[WgStep, ...]
    after: tuple[IpStep, ...]

    @property
    def empty(self) -> bool:
        """True when the running interface needs nothing."""
        return not (self.before or self.wg or self.after)


def live_steps(
    changes: Sequence[Change], interface: str, incremental: bool, spare: PublicKey
) -> LiveSteps:
    """All live steps of a host plan for a running interface."""
    before: list[IpStep] = []
    after: list[IpStep] = []
    for change in changes:
        if isinstance(change, LinkUp):
            before.append(_ip_step(change, interface))
        elif isinstance(change, SetAddress):
            (before if change.add else after).append(_ip_step(change, interface))
    # Routes change once the peers have: a new route only when a peer holds its prefix, and an old
    # one only when no peer does, so that its traffic is dropped by the interface in between rather
    # than sent out unencrypted by a less specific route.
    routes = [_ip_step(c, interface) for c in changes if isinstance(c, SetRoute)]
    after = routes + after
    after += [_ip_step(c, interface) for c in changes if isinstance(c, SetMtu)]
    return LiveSteps(tuple(before), wg_steps(changes, incremental, spare), tuple(after))


def switch_together(
    plans: Mapping[str, Sequence[Change]], pairs: Iterable[tuple[str, str]]
) -> frozenset[str]:
    """The hosts whose ``wg`` steps must run at one agreed instant: both ends of each NAT pair whose
    route moves between the relay and the direct path in these plans (see the module docstring)."""
    out: set[str] = set()
    for a, b in pairs:
        moving = [
            host
            for host, other in ((a, b), (b, a))
            if any(
                isinstance(c, UpdatePeer) and c.setting == "allowed IPs" and c.name == other
                for c in plans.get(host, ())
            )
        ]
        if moving:
            out.update(h for h in (a, b) if h in plans)
    return frozenset(out)
