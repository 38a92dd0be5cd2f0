"""What a lab is to consist of (:class:`LabSpec`): the options of ``lab up``, parsed and validated (pure).

A lab has public hosts, hosts in *sites* (public like the others, plus a private per-site bridge) and
hosts behind *NAT routers* (on a private LAN, reachable from outside only through the router). Host names
are ``lab1..labM`` in this order: public hosts, then each site in the order given, then each NAT. Where
everything lives is :mod:`wiremesh.lab.topology`'s business.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from wiremesh.errors import ValidationError
from wiremesh.lab import layout
from wiremesh.lab.layout import GROUP_MAX, GROUP_NAME_MAX, MAX_NATS, MAX_SITES
from wiremesh.model.endpoint import digits

MTU_MIN = 576  # RFC 791: every IPv4 host must accept 576-byte datagrams
MTU_MIN_IPV6 = 1280  # RFC 8200 section 5; the kernel turns IPv6 off on a link below it
MTU_MAX = 9000

_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")  # fullmatch: "$" accepts a trailing newline


@dataclass(frozen=True)
class Group:
    """``--site NAME:K`` or ``--nat NAME:K``: K hosts in site (or behind NAT router) NAME."""

    name: str
    count: int

    def __str__(self) -> str:
        return f"{self.name}:{self.count}"


@dataclass(frozen=True)
class LabSpec:
    """What ``lab up`` was asked for, validated (see :func:`make_spec`)."""

    public: int = 0
    sites: tuple[Group, ...] = ()
    nats: tuple[Group, ...] = ()
    ipv6: bool = False
    mtu_all: int | None = None
    """The underlay MTU of every host not named in ``mtu`` (``None``: the kernel's 1500)."""
    mtu: tuple[tuple[str, int], ...] = ()
    """Per-host underlay MTU: ``(("lab2", 1280),)``."""

    @property
    def total(self) -> int:
        """How many hosts the lab has."""
        return self.public + sum(g.count for g in (*self.sites, *self.nats))

    def host_mtu(self, name: str) -> int | None:
        """The underlay MTU of host ``name`` (``None``: left at the kernel's default)."""
        return dict(self.mtu).get(name, self.mtu_all)

    def to_json(self) -> dict[str, Any]:
        """The form kept in the lab's state file."""
        return {
            "public": self.public,
            "sites": [[g.name, g.count] for g in self.sites],
            "nats": [[g.name, g.count] for g in self.nats],
            "ipv6": self.ipv6,
            "mtu_all": self.mtu_all,
            "mtu": [[h, m] for h, m in self.mtu],
        }

    @staticmethod
    def from_json(value: Mapping[str, Any]) -> LabSpec:
        """Parse :meth:`to_json` output (trusted: written by ``lab up``)."""
        mtu_all = value.get("mtu_all")
        return LabSpec(
            public=int(value["public"]),
            sites=tuple(Group(str(n), int(c)) for n, c in value.get("sites", [])),
            nats=tuple(Group(str(n), int(c)) for n, c in value.get("nats", [])),
            ipv6=bool(value.get("ipv6", False)),
            mtu_all=int(mtu_all) if mtu_all is not None else None,
            mtu=tuple((str(h), int(m)) for h, m in value.get("mtu", [])),
        )


# --- parsing and validation -------------------------------------------------------------------------


def parse_group(text: str, option: str) -> Group:
    """``NAME:K`` as given to ``--site``/``--nat``; :class:`ValidationError` with a hint otherwise."""
    example = f"{option} hk:3"
    name, sep, count = text.partition(":")
    if not sep or not digits(count.strip()):
        raise ValidationError(
            f"{option} {text!r} is not NAME:COUNT", f"write it like {example} (3 hosts in 'hk')"
        )
    return Group(check_group_name(name.strip(), option), int(count))


def check_group_name(name: str, option: str) -> str:
    """A site or NAT name: 1-6 lowercase letters, digits and '-' (it goes into link names)."""
    if not name or len(name) > GROUP_NAME_MAX or not _NAME.fullmatch(name):
        raise ValidationError(
            f"{option} name {name!r} is not valid",
            f"use 1-{GROUP_NAME_MAX} lowercase letters, digits and '-', not at either end "
            "(it becomes part of kernel link names, which are at most 15 characters)",
        )
    return name


def parse_mtu(text: str) -> tuple[str | None, int]:
    """``[HOST=]N`` as given to ``--underlay-mtu``: ``(host or None for all hosts, mtu)``."""
    host, sep, value = text.rpartition("=")
    if not digits(value.strip()) or (sep and not host.strip()):
        raise ValidationError(
            f"--underlay-mtu {text!r} is not [HOST=]MTU",
            "write it like --underlay-mtu 1400 (every host) or --underlay-mtu lab2=1280",
        )
    return (host.strip() if sep else None), int(value)


def make_spec(
    public: int | None = None,
    sites: Iterable[Group] | Mapping[str, int] = (),
    nats: Iterable[Group] | Mapping[str, int] = (),
    *,
    ipv6: bool = False,
    underlay_mtu: int | Mapping[str | None, int] | Sequence[tuple[str | None, int]] | None = None,
) -> LabSpec:
    """Validate what a lab is to have; every problem is a :class:`ValidationError` with a hint.

    ``public`` may be 0 (or ``None``) only when there are sites or NATs. ``underlay_mtu`` is one MTU for
    every host, or ``{host: mtu}`` where the key ``None`` stands for every host not named.
    """
    site_groups = _groups(sites, "--site")
    nat_groups = _groups(nats, "--nat")
    grouped = site_groups + nat_groups
    if public is None:
        if not grouped:
            raise ValidationError(
                "--hosts is required", "say how many hosts, e.g. --hosts 3 (or add --site/--nat)"
            )
        public = 0
    if not grouped:
        layout.check_host_count(public)
    elif not 0 <= public <= layout.MAX_HOSTS:
        raise ValidationError(
            f"--hosts must be between 0 and {layout.MAX_HOSTS}, not {public}",
            "with --site or --nat, --hosts counts the extra public hosts (0 for none)",
        )
    _check_groups(site_groups, nat_groups)
    total = public + sum(g.count for g in grouped)
    if total > layout.MAX_HOSTS:
        raise ValidationError(
            f"the lab would have {total} hosts; at most {layout.MAX_HOSTS} fit",
            "use fewer --hosts or smaller --site/--nat counts",
        )
    if ipv6 and nat_groups:
        raise ValidationError(
            "--ipv6 cannot be combined with --nat yet (NAT hosts are IPv4-only)",
            "use --ipv6 with public and site hosts only",
        )
    mtu_all, per_host = _mtus(underlay_mtu, total, ipv6)
    return LabSpec(public, site_groups, nat_groups, ipv6, mtu_all, per_host)


def _groups(value: Iterable[Group] | Mapping[str, int], option: str) -> tuple[Group, ...]:
    items = [Group(str(k), v) for k, v in value.items()] if isinstance(value, Mapping) else value
    return tuple(Group(check_group_name(g.name, option), g.count) for g in items)


def _check_groups(sites: tuple[Group, ...], nats: tuple[Group, ...]) -> None:
    for groups, option, most in ((sites, "--site", MAX_SITES), (nats, "--nat", MAX_NATS)):
        if len(groups) > most:
            raise ValidationError(
                f"at most {most} {option} groups fit the lab's address plan, not {len(groups)}",
                f"merge some of them: {option} NAME:COUNT takes up to {GROUP_MAX} hosts",
            )
        for g in groups:
            if not 1 <= g.count <= GROUP_MAX:
                raise ValidationError(
                    f"{option} {g}: the count must be between 1 and {GROUP_MAX}",
                    f"e.g. {option} {g.name}:2",
                )
    seen: set[str] = set()
    for g in (*sites, *nats):
        if g.name in seen:
            raise ValidationError(
                f"the name {g.name!r} is used by more than one --site/--nat",
                "give every site and NAT its own name",
            )
        seen.add(g.name)


def _mtus(
    value: int | Mapping[str | None, int] | Sequence[tuple[str | None, int]] | None,
    total: int,
    ipv6: bool,
) -> tuple[int | None, tuple[tuple[str, int], ...]]:
    if value is None:
        return None, ()
    if isinstance(value, int):
        pairs: list[tuple[str | None, int]] = [(None, value)]
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        pairs = list(value)
    low = MTU_MIN_IPV6 if ipv6 else MTU_MIN
    names = [layout.host_name(i) for i in range(1, total + 1)]
    mtu_all: int | None = None
    per_host: dict[str, int] = {}
    for host, mtu in pairs:
        what = f"--underlay-mtu {host}={mtu}" if host else f"--underlay-mtu {mtu}"
        if not low <= mtu <= MTU_MAX:
            why = " (IPv6 needs at least 1280, RFC 8200)" if ipv6 and mtu < low else ""
            raise ValidationError(
                f"{what}: the MTU must be between {low} and {MTU_MAX}{why}",
                "e.g. --underlay-mtu lab2=1280",
            )
        if host is None:
            mtu_all = mtu
        elif host not in names:
            raise ValidationError(
                f"{what}: there is no host {host!r} in this lab",
                f"the hosts are lab1..lab{total}",
            )
        else:
            per_host[host] = mtu
    return mtu_all, tuple(sorted(per_host.items(), key=lambda kv: names.index(kv[0])))
