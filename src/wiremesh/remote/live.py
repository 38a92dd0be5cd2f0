"""The one host step that changes a node's WireGuard interface and config file (POSIX sh).

:func:`live_script` writes the new config next to the old one, carries out the plan's live steps
(:mod:`wiremesh.model.live`) on the running interface, and only then renames the new config into
place, so that the file and the interface change together or not at all:

- the config arrives on stdin without its ``PrivateKey`` line; the host adds it from its key file
  (awk reads the key file: the key is never on a command line, never sent, never printed);
- before the first ``wg set``, the running configuration is saved with ``wg showconf`` to a 0600 file
  under /run/wiremesh; if any step fails, every ``ip`` step done is undone (newest first), the saved
  configuration is loaded back with ``wg syncconf`` (an error path: the one place where re-setting
  every peer is accepted), the new file is deleted, and the old file was never replaced;
- the last line on stderr says what failed and whether the host is back as it was (exit 1) or the
  undo failed too (exit 3), so the operator knows which;
- every temporary name carries the script's PID: two runs can never write each other's files.

``method`` exists for the benchmark's reference runs only (``bench/live.py``): ``"syncconf"`` loads the
whole new file with ``wg syncconf`` and ``"restart"`` does ``wg-quick down`` and ``up``, as other tools
do; wiremesh itself always uses ``"wg-set"``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from wiremesh.codec.wgquick import MANAGED_MARKER
from wiremesh.model.live import IpStep, LiveSteps, WgStep

WG_DIR = "/etc/wireguard"
RUN_DIR = "/run/wiremesh"
METHODS = ("wg-set", "syncconf", "restart")

EXIT_ROLLED_BACK = 1
EXIT_UNDO_FAILED = 3


def _q(args: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)


def _preamble(interface: str) -> str:
    i = shlex.quote(interface)
    conf = shlex.quote(f"{WG_DIR}/{interface}.conf")
    key = shlex.quote(f"{WG_DIR}/{interface}.key")
    return f"""
export LC_ALL=C PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"
umask 077
i={i}; conf={conf}; key={key}
mkdir -p {RUN_DIR} {WG_DIR}
id=$$
new="$conf.wiremesh-new.$id"
prev="$conf.wiremesh-prev.$id"
snap="{RUN_DIR}/$i.running.$id"
err="{RUN_DIR}/$i.err.$id"
n=0; w=0; installed=0
cleanup() {{ rm -f "$new" "$prev" "$snap" "$err"; }}
"""


def _write_new() -> str:
    # The key line goes right after [Interface]; a missing key file is an error, not an empty key.
    return """
if [ ! -s "$key" ]; then
  echo "the key file $key is missing or empty; run 'wiremesh apply' again to recover it" >&2
  exit 1
fi
awk 'NR == FNR { k = $0; next } { print }
     /^\\[Interface\\]/ && !d { print "PrivateKey = " k; d = 1 }' "$key" - > "$new" \\
  || { echo "writing $new failed" >&2; rm -f "$new"; exit 1; }
[ -s "$new" ] || { echo "the new config came out empty" >&2; rm -f "$new"; exit 1; }
chmod 600 "$new"
"""


def _install() -> str:
    # A config that is not ours is kept once as .orig (copied under a temporary name first, so that
    # no partial .orig can exist); the previous file stays reachable under $prev (a hard link) until
    # the new one is in place.
    return f"""
if [ -f "$conf" ]; then
  if ! head -n 1 "$conf" | grep -q '^{MANAGED_MARKER}' && [ ! -e "$conf.orig" ]; then
    cp -p "$conf" "$conf.orig.$id" && mv "$conf.orig.$id" "$conf.orig"
  fi
  ln -f "$conf" "$prev" 2>/dev/null || cp -p "$conf" "$prev"
fi
mv "$new" "$conf" || fail "installing $conf"
installed=1
"""


def _undo(before: Sequence[IpStep], after: Sequence[IpStep], offset: int) -> str:
    """A shell function that undoes what was done, newest first; ``ok=0`` if an undo step fails."""
    lines = ["undo() {", "  ok=1"]
    numbered = list(enumerate(before, 1)) + list(enumerate(after, offset + 1))
    for index, step in reversed(numbered[len(before) :]):
        if step.undo is not None:
            lines.append(f'  [ "$n" -ge {index} ] && {{ ip {_q(step.undo)} 2>/dev/null || ok=0; }}')
    lines.append('  if [ "$w" = 1 ]; then wg syncconf "$i" "$snap" 2>>"$err" || ok=0; fi')
    for index, step in reversed(numbered[: len(before)]):
        if step.undo is not None:
            lines.append(f'  [ "$n" -ge {index} ] && {{ ip {_q(step.undo)} 2>/dev/null || ok=0; }}')
    lines += [
        '  if [ "$installed" = 1 ]; then',
        '    if [ -e "$prev" ]; then mv "$prev" "$conf" || ok=0; else rm -f "$conf"; fi',
        "  fi",
        "}",
    ]
    return "\n".join(lines) + "\n"


FAIL = f"""
fail() {{
  what=$1
  detail=$(grep -v '^[[:space:]]*$' "$err" 2>/dev/null | head -n 3 | tr '\\n' ' ')
  undo
  cleanup
  if [ "$ok" = 1 ]; then
    echo "$what failed: ${{detail:-no error output}}; rolled back, the host is as it was" >&2
    exit {EXIT_ROLLED_BACK}
  fi
  echo "$what failed: ${{detail:-no error output}}; the rollback failed too, the host is" \\
    "half-changed" >&2
  exit {EXIT_UNDO_FAILED}
}}
"""


def _ip_line(index: int, step: IpStep) -> str:
    return f'ip {_q(step.args)} 2>"$err" || fail {shlex.quote(step.what)}\nn={index}\n'


def _wg_line(step: WgStep) -> str:
    return f'wg set "$i" {_q(step.args)} 2>"$err" || fail {shlex.quote(step.what)}\n'


BARRIER_MAX_S = 2.0
"""The longest a host waits for the agreed instant (clocks that disagree must not stall an apply)."""


def _barrier(at: float) -> str:
    # Sleep until ``at`` (seconds since the epoch, the operator's clock; hosts are assumed NTP-synced).
    # Without %N (busybox built without it) date prints a literal N and awk reads whole seconds.
    return f"""d=$(date +%s.%N | awk -v t={at:.6f} -v m={BARRIER_MAX_S} '{{ d = t - $1; if (d > m) d = m;
  if (d > 0) printf "%.6f", d }}')
[ -n "$d" ] && sleep "$d"
"""


def live_script(
    interface: str,
    steps: LiveSteps,
    write: bool,
    bring_up: bool,
    method: str = "wg-set",
    at: float | None = None,
) -> str:
    """The script that changes the interface and the config file of one host (config on stdin when
    ``write``). ``bring_up``: the interface does not run yet, ``wg-quick up`` starts it from the file.
    ``at``: the ``wg`` steps start at this instant (both hosts of a NAT pair whose path moves, see
    :func:`wiremesh.model.live.switch_together`).
    """
    if method not in METHODS:
        raise ValueError(method)
    parts = [_preamble(interface), _undo(steps.before, steps.after, len(steps.before)), FAIL]
    if write:
        parts.append(_write_new())
    if bring_up:
        if write:
            parts.append(_install())
        parts.append(
            'wg-quick up "$i" 2>"$err" || { wg-quick down "$i" >/dev/null 2>&1; '
            'fail "wg-quick up $i"; }\n'
        )
        parts.append("cleanup\n")
        return "".join(parts)
    for index, step in enumerate(steps.before, 1):
        parts.append(_ip_line(index, step))
    if method == "wg-set" and steps.wg:
        parts.append('wg showconf "$i" > "$snap" 2>"$err" || fail "reading the running config"\n')
        if at is not None:
            parts.append(_barrier(at))
        parts.append("w=1\n")
        parts += [_wg_line(step) for step in steps.wg]
    elif method == "syncconf" and (steps.wg or write):
        # wg-quick strip reads /etc/wireguard/<iface>.conf only: the new file goes in place first.
        if write:
            parts.append(_install())
        parts.append('wg showconf "$i" > "$snap" 2>"$err" || fail "reading the running config"\n')
        parts.append("w=1\n")
        strip = f"{RUN_DIR}/$i.strip.$id"
        parts.append(
            f'wg-quick strip "$i" > "{strip}" 2>"$err" && wg syncconf "$i" "{strip}" 2>"$err" '
            f'|| {{ rm -f "{strip}"; fail "wg syncconf"; }}\nrm -f "{strip}"\n'
        )
    offset = len(steps.before)
    for index, step in enumerate(steps.after, offset + 1):
        parts.append(_ip_line(index, step))
    if write and not (method == "syncconf" and (steps.wg or write)):
        parts.append(_install())
    if method == "restart" and (steps.wg or write):
        parts.append(
            'wg-quick down "$i" >/dev/null 2>&1; wg-quick up "$i" 2>"$err" || fail "wg-quick up $i"\n'
        )
    parts.append("cleanup\n")
    return "".join(parts)
