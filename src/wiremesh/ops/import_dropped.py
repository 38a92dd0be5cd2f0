"""What an imported wg-quick file holds that the mesh will not keep (issue 10, item 9).

wiremesh models addresses, ports, MTU, keys, endpoints and AllowedIPs; the next ``apply`` writes its
own config, so every other key of an imported file disappears from the host: firewall hooks
(``PostUp``...), ``DNS``, ``Table``, ``FwMark``, ``SaveConfig``, and ``PresharedKey`` (with it the
post-quantum protection of that link). Each is reported, per file. Hooks and preshared keys are
refused unless the user says ``--drop-unsupported``: losing them silently would break firewalls or
weaken links.
"""

from __future__ import annotations

from dataclasses import dataclass

from wiremesh.codec.wgquick import WgQuickConfig
from wiremesh.errors import ValidationError

HOOKS = ("preup", "postup", "predown", "postdown")
REFUSED = (*HOOKS, "presharedkey")
NAMES = {
    "preup": "PreUp",
    "postup": "PostUp",
    "predown": "PreDown",
    "postdown": "PostDown",
    "presharedkey": "PresharedKey",
    "dns": "DNS",
    "table": "Table",
    "fwmark": "FwMark",
    "saveconfig": "SaveConfig",
}
WHY = {
    "presharedkey": "the link loses its preshared key",
    "dns": "the host's resolver is not set by wiremesh",
    "table": "wiremesh adds the routes of AllowedIPs to the main table",
    "fwmark": "packets are no longer marked",
    "saveconfig": "wg-quick no longer saves the running config on 'down'",
}


@dataclass(frozen=True)
class Dropped:
    """One key of one file that the mesh will not keep."""

    path: str
    section: str  # "[Interface]" or "[Peer] at line N"
    key: str  # as wg-quick(8) spells it: "PostUp"
    refused: bool  # a hook or a preshared key: only with --drop-unsupported

    def describe(self) -> str:
        """``alpha/wg0.conf: [Interface] PostUp will not be kept (hooks are not run by wiremesh)``."""
        lower = self.key.lower()
        why = (
            "wiremesh runs no hooks"
            if lower in HOOKS
            else WHY.get(lower, "wiremesh does not manage it")
        )
        return f"{self.path}: {self.section} {self.key} will not be kept ({why})"


def dropped_keys(path: str, config: WgQuickConfig) -> list[Dropped]:
    """Every key of ``config`` that is not modelled. Values are never shown: a PresharedKey is a
    secret, and hooks may carry some."""
    out = [
        Dropped(path, "[Interface]", NAMES.get(key, key), key in REFUSED)
        for key, _ in config.interface.extra
    ]
    for peer in config.peers:
        out += [
            Dropped(path, f"[Peer] at line {peer.line}", NAMES.get(key, key), key in REFUSED)
            for key, _ in peer.extra
        ]
    return out


def unsupported(files: list[tuple[str, WgQuickConfig]], drop: bool) -> list[str]:
    """A note for every unmodelled key of every file; hooks and preshared keys are refused (every
    one named) unless ``drop``."""
    dropped = [d for path, config in files for d in dropped_keys(path, config)]
    refused = [d for d in dropped if d.refused]
    if refused and not drop:
        listed = "\n  ".join(d.describe() for d in refused)
        raise ValidationError(
            "import: the next apply would remove these from the hosts, so nothing was "
            f"imported:\n  {listed}",
            "move hooks into your own firewall setup (and accept losing the preshared keys), then "
            "run again with --drop-unsupported to import without them",
        )
    return [d.describe() for d in dropped]
