"""``policy check``, ``policy show`` and ``policy verify``: the access policy offline, and as the hosts
enforce it.

- check (pure): every policy test against the compiled policy, with the rule that decided;
- show (pure): one node's compiled table, as ``nft -f`` loads it;
- verify (hosts): every case of :func:`wiremesh.model.policy.verify.cases` probed from its source
  host over the overlay (:func:`wiremesh.remote.nft.probe`), compared with what the policy says.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass

from wiremesh.codec.nft_host import parse_probe
from wiremesh.codec.nftables import render
from wiremesh.errors import ValidationError
from wiremesh.model.nft import HostFirewall
from wiremesh.model.policy.compile import compile_host, families
from wiremesh.model.policy.evaluate import TestOutcome, run_tests
from wiremesh.model.policy.resolve import ResolvedPolicy, resolve
from wiremesh.model.policy.verify import VerifyCase, VerifyResult, cases
from wiremesh.ops.mesh import RunOptions, ssh_options, ssh_target
from wiremesh.remote import nft
from wiremesh.remote.fanout import fan_out
from wiremesh.remote.ssh import HostError, Sessions, connect
from wiremesh.store.inventory_file import InventoryFile


def _resolved(file: InventoryFile) -> ResolvedPolicy:
    resolved = resolve(file.load())
    if resolved is None:
        raise ValidationError(
            "the inventory has no [policy]: every node may reach every port of every other node",
            "add a [policy] table (docs/policy.md)",
        )
    return resolved


def check(file: InventoryFile) -> tuple[ResolvedPolicy, list[TestOutcome]]:
    """Every policy test and its outcome (pure, no host is contacted)."""
    resolved = _resolved(file)
    return resolved, run_tests(resolved)


def show(file: InventoryFile, name: str) -> tuple[HostFirewall | None, str | None]:
    """``name``'s compiled table and the transaction that loads it (None: no table on that host)."""
    inventory = file.load()
    node = inventory.node(name)
    resolved = _resolved(file)
    firewall = compile_host(resolved, node.name, inventory.mesh.interface, families(inventory))
    return firewall, render(firewall) if firewall is not None else None


@dataclass(frozen=True)
class VerifyReport:
    """Every probe and what it saw; hosts that could not probe."""

    results: tuple[VerifyResult, ...]
    failed: dict[str, str]

    @property
    def mismatches(self) -> list[VerifyResult]:
        """Probes whose outcome contradicts the policy."""
        return [r for r in self.results if r.mismatch]


def verify(file: InventoryFile, options: RunOptions, timeout: int = 3) -> VerifyReport:
    """Probe every case from its source host over the overlay (all hosts at once)."""
    inventory = file.load()
    resolved = _resolved(file)
    ssh = ssh_options(file, inventory, options)
    by_source: dict[str, list[VerifyCase]] = defaultdict(list)
    for case in cases(resolved):
        by_source[case.source].append(case)

    async def run() -> VerifyReport:
        async with Sessions() as sessions:

            async def probe(name: str) -> list[VerifyResult]:
                session = await connect(name, ssh_target(inventory.node(name)), ssh)
                sessions.open[name] = session
                mine = by_source[name]
                targets = [nft.ProbeTarget(c.address, c.probe) for c in mine]
                result = await session.run(
                    nft.probe(targets, timeout),
                    step="probing the policy",
                    timeout=timeout + options.command_timeout,
                )
                seen = parse_probe(result.stdout)
                out = []
                for case in mine:
                    key = (case.probe.proto.value, case.address, case.probe.port)
                    out.append(VerifyResult(case, seen.get(key, "error")))
                return out

            done = await fan_out(
                sorted(by_source),
                probe,
                limit=options.parallel,
                progress=options.progress,
                label="probing",
            )
        results: list[VerifyResult] = []
        failed: dict[str, str] = {}
        for name in sorted(by_source):
            value = done[name]
            if isinstance(value, HostError):
                failed[name] = value.reason
            else:
                results += value
        return VerifyReport(tuple(results), failed)

    return asyncio.run(run())
