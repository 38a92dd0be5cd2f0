"""Host-side building blocks of the policy: shell snippets (POSIX sh, run as root over SSH) that read,
load and keep our nftables table, load guard changes commit-confirmed, and probe the policy.

Contracts (stdout is parsed by :mod:`wiremesh.codec.nft_host`):

=================================  =======================  ===============================
snippet                            stdin                    exit codes
=================================  =======================  ===============================
:func:`read`                       -                        0 (sections on stdout)
:func:`load`                       a transaction            0 loaded; 1 nft refused it; 6 cut
:func:`persist`                    the full transaction     0 kept; 1 nft refused it; 6 cut
:func:`remove`                     -                        0 (table and boot file gone)
:func:`begin_confirmed`            a transaction            0 loaded, undo armed; 1 nft refused
                                                            (nothing changed); 5 another change
                                                            awaits confirmation; 6 cut
:func:`confirm`                    -                        0 confirmed; 3 already rolled back;
                                                            4 nothing pending with this token;
                                                            7 rolled back but the undo failed
:func:`rollback`                   -                        0 rolled back now; 4 nothing pending;
                                                            7 the undo failed
:func:`probe`                      -                        0 (one line per target)
=================================  =======================  ===============================

"6 cut": the transaction did not end with :data:`~wiremesh.codec.nftables.TRAILER` (the SSH session
broke while sending it), and nothing was loaded: a shortened transaction can be a valid one (the
first two lines of a full replacement delete our table).

Everything written is written atomically (temp file, ``mv``) with ``umask 077`` and marked as ours:
the boot file starts with :data:`~wiremesh.codec.nftables.HEADER`; commit-confirmed state lives in
``/run/wiremesh/nft-<iface>/`` (gone at reboot, when the boot file, which holds the last confirmed
table, is loaded instead).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from wiremesh.codec.nft_host import PROBE, SECTION
from wiremesh.codec.nftables import HEADER, TRAILER
from wiremesh.model.addressing import IPAddress
from wiremesh.model.names import interface_name
from wiremesh.model.policy.ports import Probe, Proto

WG_DIR = "/etc/wireguard"
RUN_DIR = "/run/wiremesh"
_ENV = 'export LC_ALL=C PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"'
_TOKEN_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789")


def boot_file(interface: str) -> str:
    """Where a host keeps its table for boot: ``/etc/wireguard/wiremesh-<iface>.nft``."""
    return f"{WG_DIR}/wiremesh-{interface_name(interface)}.nft"


def boot_hook(interface: str) -> str:
    """The wg-quick line that loads the table whenever the interface comes up (for the lead to add
    to the ``[Interface]`` section of the managed config).

    Why a ``PreUp`` hook (wg-quick(8): "PreUp ... executed by bash before setting up the
    interface") and not a systemd unit ordered before ``wg-quick@<iface>``:

    - it runs on every way up: the systemd unit, a manual ``wg-quick up``, wiremesh's first
      bring-up, and hosts without systemd (the lab, containers, Alpine/OpenRC);
    - it runs *before* the interface exists, so there is no moment with the mesh up and the policy
      not loaded; the rules match the interface by name (``iifname``), which works before it exists;
    - if the table does not load, wg-quick stops and the interface stays down: the mesh fails
      closed rather than open (the underlay and SSH are not affected: only mesh traffic is filtered).

    Caveat: a ``flush ruleset`` by someone else (``systemctl restart nftables`` with Debian's default
    /etc/nftables.conf) deletes our table until the next bring-up or apply; plan shows it ("create
    table"). ``include "/etc/wireguard/wiremesh-wg0.nft"`` at the end of /etc/nftables.conf keeps it
    there too: the file is a complete transaction that replaces only our table.
    """
    return f"PreUp = nft -f {shlex.quote(boot_file(interface))}"


def _state_dir(interface: str) -> str:
    return f"{RUN_DIR}/nft-{interface_name(interface)}"


def _token(token: str) -> str:
    if not 1 <= len(token) <= 32 or not set(token) <= _TOKEN_CHARS:
        raise ValueError(f"a confirm token is 1-32 lowercase letters and digits, not {token!r}")
    return token


def _check_trailer(path: str) -> str:
    """Refuse (exit 6) a file that did not arrive whole."""
    return (
        f'if [ "$(tail -n 1 {path})" != {shlex.quote(TRAILER)} ]; then\n'
        f"  rm -f {path}\n"
        '  echo "wiremesh: the transaction arrived incomplete; nothing was loaded" >&2\n'
        "  exit 6\n"
        "fi\n"
    )


def read(interface: str, table: bool = True) -> str:
    """Read our table as JSON (``nft -j list table inet wiremesh``), the boot file's sha256 and the
    state of commit-confirmed changes, changing nothing.

    Sections: ``table`` (``json`` then the JSON on one line, ``absent``, ``no-nft``, or ``error
    MESSAGE``), ``boot`` (sha256 or ``missing``), ``confirm`` (``pending TOKEN DEADLINE`` lines,
    ``last OUTCOME TOKEN AT``, ``now EPOCH``).

    ``table=False`` (the inventory has no policy): the table is read only where a boot file says
    wiremesh put one there (so that plan can take it away); else it is reported ``absent``
    without running nft, which saves a few forks per host on every plan of a mesh without policy.
    """
    d = _state_dir(interface)
    boot = shlex.quote(boot_file(interface))
    want = "1" if table else "0"
    return f"""
{_ENV}
s() {{ echo "{SECTION}$1"; }}
s table
if ! command -v nft >/dev/null 2>&1; then echo no-nft
elif [ {want} = 0 ] && [ ! -f {boot} ]; then echo absent
else
  err=${{TMPDIR:-/tmp}}/wiremesh-nft-err.$$
  if out=$(nft -j list table inet wiremesh 2>"$err"); then echo json; printf '%s\\n' "$out"
  elif grep -q 'No such file or directory' "$err"; then echo absent
  else echo "error $(head -c 400 "$err" | tr '\\n' ' ')"; fi
  rm -f "$err"
fi
s boot
if [ -f {boot} ]; then sha256sum < {boot} | cut -d' ' -f1; else echo missing; fi
s confirm
for p in {d}/pending.*; do [ -f "$p" ] && echo "pending $(cat "$p")"; done
if [ -f {d}/state ]; then echo "last $(cat {d}/state)"; fi
echo "now $(date +%s)"
s end
"""


def load(interface: str) -> str:
    """Load the transaction on stdin in one ``nft -f`` run (atomic: all or nothing)."""
    d = _state_dir(interface)
    return f"""
set -eu
umask 077
{_ENV}
mkdir -p {d}
cat > {d}/load.nft
{_check_trailer(f"{d}/load.nft")}nft -f {d}/load.nft
rm -f {d}/load.nft
"""


def persist(interface: str) -> str:
    """Keep the full transaction on stdin as the boot file (0600, atomically), after ``nft -c``
    checked it. Run it after a change is loaded (and, for guard changes, confirmed): the file is
    what the host loads at its next bring-up."""
    boot = boot_file(interface)
    tmp = shlex.quote(boot + ".wiremesh-tmp")
    return f"""
set -eu
umask 077
{_ENV}
mkdir -p {WG_DIR}
cat > {tmp}
{_check_trailer(tmp)}if [ "$(head -n 1 {tmp})" != {shlex.quote(HEADER)} ] ||
   [ "$(sed -n 2p {tmp})" != 'table inet wiremesh {{}}' ]; then
  rm -f {tmp}; echo "wiremesh: not a whole wiremesh table (an element change?); not kept" >&2
  exit 1
fi
nft -c -f {tmp}
chmod 600 {tmp}
mv {tmp} {shlex.quote(boot)}
"""


def remove(interface: str) -> str:
    """Delete our table (if there) and our boot file (if it is ours): the policy is off."""
    boot = shlex.quote(boot_file(interface))
    return f"""
set -u
{_ENV}
if command -v nft >/dev/null 2>&1; then
  printf 'table inet wiremesh {{}}\\ndelete table inet wiremesh\\n' | nft -f - || exit 1
fi
if [ -f {boot} ] && [ "$(head -n 1 {boot})" = {shlex.quote(HEADER)} ]; then rm -f {boot}; fi
exit 0
"""


# The undo process: ``sh -c UNDO wiremesh-undo DIR TOKEN SECONDS``. It records its PID, sleeps, and
# then takes the pending marker by renaming it; rename(2) is atomic, so of it and a confirm that
# races it exactly one wins. The loser finds nothing to rename and does nothing.
UNDO_SCRIPT = r"""
d=$1; t=$2; n=$3
echo $$ > "$d/undo.$t.pid"
sleep "$n"
if mv "$d/pending.$t" "$d/firing.$t" 2>/dev/null; then
  if nft -f "$d/undo.nft" 2>"$d/undo.err"; then r=rolled-back; else r=undo-failed; fi
  echo "$r $t $(date +%s)" > "$d/state.tmp" && mv "$d/state.tmp" "$d/state"
  rm -f "$d/firing.$t"
fi
rm -f "$d/undo.$t.pid"
"""


def _stop_undo(d: str, t: str) -> str:
    """Kill the undo process of token ``t`` (its whole process group: setsid made it the leader),
    after checking that the PID is still that process."""
    return f"""pid=$(cat {d}/undo.{t}.pid 2>/dev/null || true)
if [ -n "$pid" ] && grep -q wiremesh-undo /proc/"$pid"/cmdline 2>/dev/null; then
  kill -s TERM -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
fi
rm -f {d}/undo.{t}.pid
"""


def begin_confirmed(interface: str, token: str, seconds: int) -> str:
    """Load the transaction on stdin commit-confirmed: unless :func:`confirm` runs with ``token``
    within ``seconds``, the host puts our table back as it was (or deletes it, if there was none).

    Before anything changes, the host saves our current table as an undo transaction and checks
    that nft accepts both; the undo runs in its own session (``setsid``, no file open on the SSH
    session), so it survives the SSH session ending or hanging (which is what a bad guard does).
    Where systemd-logind kills a session's processes when it ends (``KillUserProcesses=yes``, not
    Debian's or Ubuntu's default) the undo would die with it; the boot file still holds the last
    confirmed table. Prints ``pending TOKEN DEADLINE``.
    """
    if not 1 <= seconds <= 3600:
        raise ValueError(f"confirm within 1-3600 s, not {seconds}")
    d = _state_dir(interface)
    t = _token(token)
    undo = shlex.quote(UNDO_SCRIPT)
    return f"""
set -eu
umask 077
{_ENV}
mkdir -p {d}
for p in {d}/pending.*; do
  if [ -f "$p" ]; then
    echo "wiremesh: another firewall change awaits confirmation: $(cat "$p")" >&2; exit 5
  fi
done
cat > {d}/new.nft
{_check_trailer(f"{d}/new.nft")}printf 'table inet wiremesh {{}}\ndelete table inet wiremesh\n' > {d}/undo.tmp
if nft list table inet wiremesh > {d}/current 2> {d}/err; then cat {d}/current >> {d}/undo.tmp
elif ! grep -q 'No such file or directory' {d}/err; then cat {d}/err >&2; exit 1; fi
echo {shlex.quote(TRAILER)} >> {d}/undo.tmp
nft -c -f {d}/undo.tmp
nft -c -f {d}/new.nft
mv {d}/undo.tmp {d}/undo.nft
rm -f {d}/current {d}/err {d}/state
deadline=$(( $(date +%s) + {seconds} ))
echo "{t} $deadline" > {d}/pending.tmp
mv {d}/pending.tmp {d}/pending.{t}
setsid sh -c {undo} wiremesh-undo {d} {t} {seconds} </dev/null >/dev/null 2>&1 &
i=0
while [ ! -s {d}/undo.{t}.pid ]; do
  i=$((i + 1))
  if [ "$i" -gt 100 ]; then
    rm -f {d}/pending.{t}; echo "wiremesh: the undo process did not start" >&2; exit 1
  fi
  sleep 0.05 2>/dev/null || sleep 1
done
if ! nft -f {d}/new.nft; then
  if mv {d}/pending.{t} {d}/cancel.{t} 2>/dev/null; then
{_stop_undo(d, t)}    rm -f {d}/cancel.{t}
    echo "cancelled {t} $(date +%s)" > {d}/state
  fi
  exit 1
fi
rm -f {d}/new.nft
echo "pending {t} $deadline"
"""


def confirm(interface: str, token: str) -> str:
    """Confirm the pending change ``token`` (run over a *new* SSH connection: that it could log in
    is the proof the change did not cut SSH off). Prints the outcome."""
    d = _state_dir(interface)
    t = _token(token)
    return f"""
set -u
{_ENV}
if mv {d}/pending.{t} {d}/confirming.{t} 2>/dev/null; then
{_stop_undo(d, t)}  rm -f {d}/confirming.{t} {d}/undo.nft {d}/undo.err
  echo "confirmed {t} $(date +%s)" > {d}/state.tmp && mv {d}/state.tmp {d}/state
  echo "confirmed {t}"; exit 0
fi
last=$(cat {d}/state 2>/dev/null || true)
case "$last" in
  "rolled-back {t} "*) echo "$last"; exit 3;;
  "undo-failed {t} "*) echo "$last"; exit 7;;
esac
if [ -e {d}/firing.{t} ]; then echo "rolled-back {t} $(date +%s)"; exit 3; fi
echo "nothing pending for {t}"; exit 4
"""


def rollback(interface: str, token: str) -> str:
    """Undo the pending change ``token`` now, instead of waiting for the deadline."""
    d = _state_dir(interface)
    t = _token(token)
    return f"""
set -u
{_ENV}
if ! mv {d}/pending.{t} {d}/firing.{t} 2>/dev/null; then echo "nothing pending for {t}"; exit 4; fi
{_stop_undo(d, t)}r=rolled-back; code=0
if ! nft -f {d}/undo.nft 2>{d}/undo.err; then r=undo-failed; code=7; fi
echo "$r {t} $(date +%s)" > {d}/state.tmp && mv {d}/state.tmp {d}/state
rm -f {d}/firing.{t}
echo "$r {t}"; exit $code
"""


@dataclass(frozen=True)
class ProbeTarget:
    """One probe to send from a host: ``probe`` toward ``address`` (a node's overlay address)."""

    address: IPAddress
    probe: Probe


def probe(targets: Sequence[ProbeTarget], timeout: int = 3) -> str:
    """Probe every target at once over the overlay; print ``@@probe PROTO ADDRESS PORT RESULT``.

    TCP needs no listener: a port the policy lets through answers (``open``, or ``refused``: the
    host's TCP stack sent a reset), a port it drops does not answer (``timeout``). The connect uses
    bash's ``/dev/tcp`` under coreutils' ``timeout``: Debian and Ubuntu have both (bash is
    Essential there; Debian builds it with network redirections), while nc differs between its
    variants in flags and exit codes. Without bash the result is ``nobash``. ICMP: one ping
    (``reply``/``noreply``). UDP cannot be observed without a listener that answers (a dropped and
    an accepted datagram look the same from the sender): ``notprobed``.
    """
    if not 1 <= timeout <= 60:
        raise ValueError(f"probe timeout 1-60 s, not {timeout}")
    jobs = []
    reports = []
    for index, target in enumerate(targets):
        address = shlex.quote(str(target.address))
        port = target.probe.port
        out = f'"$d/{index}"'
        if target.probe.proto is Proto.TCP:
            jobs.append(
                f'if [ -n "$bash" ]; then ( timeout {timeout} "$bash" -c '
                f"'exec 3<>\"/dev/tcp/$0/$1\"' {address} {port} 2>{out}.err; "
                f"echo $? > {out}.rc ) & else echo nobash > {out}.rc; fi"
            )
            reports.append(f'r=$(tcp_result {out}); echo "{PROBE}tcp {target.address} {port} $r"')
        elif target.probe.proto is Proto.ICMP:
            jobs.append(
                f"( ping -n -q -c 1 -W {timeout} {address} >/dev/null 2>&1; echo $? > {out}.rc ) &"
            )
            reports.append(
                f'if [ "$(cat {out}.rc)" = 0 ]; then r=reply; else r=noreply; fi; '
                f'echo "{PROBE}icmp {target.address} - $r"'
            )
        else:
            reports.append(f'echo "{PROBE}udp {target.address} {port} notprobed"')
    return (
        f"""
{_ENV}
d=$(mktemp -d)
bash=$(command -v bash || true)
if ! command -v timeout >/dev/null 2>&1; then bash=""; fi
tcp_result() {{
  rc=$(cat "$1.rc")
  if [ "$rc" = nobash ]; then echo nobash
  elif [ "$rc" = 0 ]; then echo open
  elif [ "$rc" = 124 ]; then echo timeout
  elif grep -q 'Connection refused' "$1.err"; then echo refused
  elif grep -q -e 'No route to host' -e 'unreachable' "$1.err"; then echo unreachable
  else echo error; fi
}}
"""
        + "\n".join(jobs)
        + "\nwait\n"
        + "\n".join(reports)
        + '\nrm -rf "$d"\n'
    )
