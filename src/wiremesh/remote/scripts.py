"""The shell scripts wiremesh runs on hosts (POSIX sh, run as root over SSH).

Rules for everything here:

- Nothing prints a private key. The observe script hides the key fields of ``wg show dump`` and reads
  only config files marked as ours (and even then drops any ``PrivateKey`` line), all on the host.
- Everything written is written atomically (temp file in the same directory, then ``mv``) with
  ``umask 077``, and marked as managed by wiremesh.
- Each script is one self-contained step, so that an error names the step that failed.
"""

from __future__ import annotations

import shlex

from wiremesh.codec import sysctl
from wiremesh.codec.wgquick import MANAGED_MARKER
from wiremesh.remote import nft

WG_DIR = "/etc/wireguard"
SECTION = "@@wiremesh "


def paths(interface: str) -> tuple[str, str]:
    """The config and key file of ``interface`` on a host."""
    return f"{WG_DIR}/{interface}.conf", f"{WG_DIR}/{interface}.key"


def hosts_markers(mesh: str) -> tuple[str, str]:
    """The lines around the mesh's managed block in /etc/hosts."""
    return (
        f"# BEGIN wiremesh {mesh} (managed by wiremesh: 'wiremesh apply' rewrites this block)",
        f"# END wiremesh {mesh}",
    )


SYSCTL_FILE = "/etc/sysctl.d/60-wiremesh.conf"


def observe(
    interface: str,
    mesh: str = "mesh",
    targets: tuple[str, ...] = (),
    files: tuple[str, ...] = (),
    full: bool = True,
    policy: bool = True,
) -> str:
    """Read everything ``plan`` and ``status`` need, in one round trip, changing nothing.

    ``targets`` are underlay addresses of the peers: the route toward each is read for
    ``mtu = "auto"``. For each of ``files``: whether it exists, is ours (marker on its first line),
    its mode and sha256 (never its content: such files may hold secrets). ``full=False`` (status)
    leaves out what only planning needs: other routes, /etc/hosts, forwarding, underlay, files, and
    our nftables table, its boot file and the state of commit-confirmed changes
    (:func:`wiremesh.remote.nft.read`, in its own ``nft`` section; ``policy=False``: the mesh has
    none, the table is read only where a boot file of ours is).

    Few processes on purpose: on 30 hosts sharing two CPUs, each extra fork per peer showed up as
    seconds of plan time. Links, addresses and routes of all interfaces come from one ``ip`` call each
    and are sorted out by the parser.
    """
    conf, key = paths(interface)
    i = shlex.quote(interface)
    common = f"""
export LC_ALL=C PATH="$PATH:/usr/sbin:/sbin:/usr/local/sbin"
s() {{ echo "{SECTION}$1"; }}
s tools
for c in wg wg-quick ip wireguard-go systemctl; do command -v "$c" >/dev/null 2>&1 && echo "$c"; done
s wgversion
wg --version 2>/dev/null
s os
( . /etc/os-release 2>/dev/null; echo "${{ID:-unknown}} ${{ID_LIKE:-}}" )
s kernel
if [ -d /sys/module/wireguard ]; then echo loaded
elif modprobe -n wireguard >/dev/null 2>&1; then echo available
else echo missing; fi
s systemd
if [ -d /run/systemd/system ]; then echo running; systemctl is-enabled wg-quick@{i} 2>/dev/null || true; fi
s now
date +%s
s pubkey
if [ -s {key} ]; then wg pubkey < {key}; fi
s config
# Our config: its text without the PrivateKey line; another config: only that it exists.
if [ -f {conf} ]; then
  awk 'NR == 1 {{ if (index($0, "{MANAGED_MARKER}") == 1) {{ m = 1; print "managed" }}
                  else {{ print "unmanaged"; exit }} }}
       m && tolower($0) !~ /^[ \t]*privatekey[ \t]*=/' {conf}
fi
s dump
# Hide the private key (interface line) and preshared keys (peer lines) before they leave the host;
# only whether a peer has a preshared key is told ("(none)" stays as it is).
wg show {i} dump 2>/dev/null | awk -F '\t' 'BEGIN {{ OFS = "\t" }}
  NR == 1 {{ $1 = "(hidden)" }} NR > 1 && $2 != "(none)" {{ $2 = "(hidden)" }} {{ print }}'
s links
ip -o link show 2>/dev/null
s addrs
ip -o addr show 2>/dev/null
s routes
ip -o -4 route show table all 2>/dev/null
ip -o -6 route show table all 2>/dev/null
"""
    if not full:
        return common + "s end\n"
    begin, end = (shlex.quote(m) for m in hosts_markers(mesh))
    quoted_targets = " ".join(shlex.quote(t) for t in targets)
    quoted_files = " ".join(shlex.quote(p) for p in files)
    return (
        common
        + f"""s hosts
awk -v b={begin} -v e={end} '$0 == b {{ f = 1; print "present"; next }} $0 == e {{ f = 0; next }} f' \\
  /etc/hosts 2>/dev/null || true
s forward
f4=0; f6=0
read f4 < /proc/sys/net/ipv4/ip_forward 2>/dev/null
read f6 < /proc/sys/net/ipv6/conf/all/forwarding 2>/dev/null
echo "$f4"; echo "$f6"
s underlay
for t in {quoted_targets}; do echo "@ $t"; ip -o route get "$t" 2>/dev/null; done
s files
for p in {quoted_files}; do
  if [ -f "$p" ]; then
    m=no; read -r first < "$p" || true
    case "$first" in "{MANAGED_MARKER}"*) m=yes;; esac
    echo "$p $m $(stat -c %a "$p") $(sha256sum < "$p" | cut -d' ' -f1)"
  else echo "$p missing"; fi
done
s nft
{nft.read(interface, policy)}echo "{SECTION}end"
"""
    )


def ensure_key(interface: str) -> str:
    """Make the private key file on the host if it has none, and print only the public key.

    Where the key comes from, in order: the running interface (its peers know that key: a lost key
    file is recovered from it), the config file (an imported mesh, or our own config whose key file
    was lost), else a new key. All on the host; the key is never printed or sent.
    """
    conf, key = paths(interface)
    i = shlex.quote(interface)
    return f"""
set -eu
umask 077
mkdir -p {WG_DIR}
if [ ! -s {key} ]; then
  tmp={key}.wiremesh-new.$$
  trap 'rm -f "$tmp"' EXIT
  k=$(wg show {i} private-key 2>/dev/null || true)
  case "$k" in ""|"(none)") ;; *) printf '%s\\n' "$k" > "$tmp" ;; esac
  k=
  if [ ! -s "$tmp" ] && [ -f {conf} ]; then
    awk -F '=' 'tolower($1) ~ /^[ \\t]*privatekey[ \\t]*$/ {{
      v = $0; sub(/^[^=]*=[ \\t]*/, "", v); sub(/[ \\t#].*$/, "", v); print v; exit }}' {conf} > "$tmp"
  fi
  if [ ! -s "$tmp" ]; then wg genkey > "$tmp"; fi
  wg pubkey < "$tmp" > /dev/null  # a valid key, or fail before it replaces anything
  chmod 600 "$tmp"
  mv "$tmp" {key}
fi
wg pubkey < {key}
"""


def _drop_block(mesh: str) -> str:
    """awk that prints /etc/hosts without the mesh's block."""
    begin, end = (shlex.quote(m) for m in hosts_markers(mesh))
    return f"awk -v b={begin} -v e={end} '$0 == b {{ f = 1; next }} $0 == e {{ f = 0; next }} !f'"


def _replace_hosts(new: str) -> str:
    # Atomic rename where /etc/hosts is a plain file; where it is a mount point (containers bind
    # it in), rename is impossible and the file is rewritten in place instead.
    return f"""
chmod 644 {new}
if mountpoint -q /etc/hosts 2>/dev/null; then cat {new} > /etc/hosts && rm -f {new}
else mv {new} /etc/hosts; fi
"""


def write_hosts_block(mesh: str) -> str:
    """Replace (or add) the mesh's marked block in /etc/hosts with stdin's lines, atomically."""
    begin, end = hosts_markers(mesh)
    return f"""
set -eu
umask 022
new=/etc/.hosts.wiremesh-new.$$
{{ {_drop_block(mesh)} /etc/hosts 2>/dev/null || true
  echo {shlex.quote(begin)}
  cat
  echo {shlex.quote(end)}; }} > $new
{_replace_hosts("$new")}
"""


def remove_hosts_block(mesh: str) -> str:
    """Take the mesh's block out of /etc/hosts (if there is one)."""
    begin, _ = hosts_markers(mesh)
    return f"""
set -eu
umask 022
grep -qxF {shlex.quote(begin)} /etc/hosts 2>/dev/null || exit 0
new=/etc/.hosts.wiremesh-new.$$
{_drop_block(mesh)} /etc/hosts > $new
{_replace_hosts("$new")}
"""


def enable_forwarding(ipv4: bool, ipv6: bool) -> str:
    """Turn on forwarding now (sysctl) and after reboots (a marked file in /etc/sysctl.d).

    The file's content comes from :mod:`wiremesh.codec.sysctl` (guarded lines); here it is only
    quoted into the script.
    """
    settings = sysctl.forwarding(ipv4, ipv6)
    keys = [k for k, _ in settings]
    lines = " ".join(shlex.quote(line) for line in sysctl.render_lines(settings))
    now = " ".join(f"-w {shlex.quote(f'{k}={v}')}" for k, v in settings)
    return f"""
set -eu
umask 022
sysctl -q {now}
mkdir -p /etc/sysctl.d
{{ echo {shlex.quote(sysctl.HEADER)}
  grep -v '^#' {SYSCTL_FILE} 2>/dev/null | grep -v -e '^$' {" ".join(f"-e '^{k} '" for k in keys)} || true
  printf '%s\\n' {lines}; }} > {SYSCTL_FILE}.wiremesh-new.$$
mv {SYSCTL_FILE}.wiremesh-new.$$ {SYSCTL_FILE}
"""


def write_file(path: str, mode: int) -> str:
    """Write stdin to ``path`` atomically with ``mode``, creating its directory (0755)."""
    directory = shlex.quote(path.rsplit("/", 1)[0] or "/")
    target = shlex.quote(path)
    tmp = shlex.quote(path + ".wiremesh-new") + ".$$"
    return f"""
set -eu
umask 077
mkdir -p {directory}
trap 'rm -f {tmp}' EXIT
cat > {tmp}
chmod {mode:o} {tmp}
mv {tmp} {target}
"""


def remove_managed_file(path: str) -> str:
    """Remove ``path`` if its first line is our marker (a file someone else put there stays)."""
    target = shlex.quote(path)
    return f"""
set -eu
if [ -f {target} ] && head -n 1 {target} | grep -q '^{MANAGED_MARKER}'; then rm -f {target}; fi
"""


def enable_service(interface: str) -> str:
    """Enable wg-quick@<iface> (systemd) so that the interface comes back after a reboot."""
    return f"systemctl enable wg-quick@{shlex.quote(interface)} >/dev/null 2>&1"


def tear_down(interface: str, mesh: str = "mesh") -> str:
    """Take a removed node out: interface down, service disabled, our files removed.

    Forwarding is left as it is at runtime (other things may rely on it); only our sysctl file goes,
    so it is off again after the next reboot. The /etc/hosts block is removed by its own step. An
    interface whose config names another mesh is not ours to take down: the script refuses (exit 4),
    also when the plan missed it (another run changed the host since).
    """
    conf, key = paths(interface)
    i = shlex.quote(interface)
    other = shlex.quote(f" of mesh {mesh}")
    return f"""
set -u
if [ -f {conf} ] && head -n 1 {conf} | grep -q ' of mesh ' && ! head -n 1 {conf} | grep -qF {other}; then
  echo "{conf} belongs to another mesh: $(head -n 1 {conf})" >&2
  exit 4
fi
rm -f {SYSCTL_FILE}
# --now: after a reboot the unit brought the interface up and stays "active" until it is stopped
# (wg-quick@.service has RemainAfterExit=yes); stopping it runs `wg-quick down`.
if [ -d /run/systemd/system ]; then systemctl disable --now wg-quick@{i} >/dev/null 2>&1 || true; fi
if ip link show dev {i} >/dev/null 2>&1; then
  wg-quick down {i} >/dev/null 2>&1 || ip link del dev {i}
fi
if [ -f {conf} ] && head -n 1 {conf} | grep -q '^{MANAGED_MARKER}'; then
  rm -f {conf} {conf}.wiremesh-prev {key}
fi
"""


def ping_all(targets: list[str], count: int = 3, interval: float = 0.2, deadline: int = 7) -> str:
    """Ping every target at once; print ``target transmitted received avg_ms`` per target.

    Each ping runs until ``count`` replies or ``deadline`` seconds (ping(8) ``-c`` with ``-w``):
    the first packets toward a peer wait for a WireGuard handshake, and a lost handshake initiation
    is only retried after REKEY_TIMEOUT (5 s), so a fixed short ping would call such a link dead.
    """
    quoted = " ".join(shlex.quote(t) for t in targets)
    return f"""
export LC_ALL=C
d=$(mktemp -d)
for t in {quoted}; do
  ping -n -q -c {count} -i {interval} -w {deadline} "$t" > "$d/$t" 2>&1 &
done
wait
for t in {quoted}; do
  tx=$(sed -n 's/^\\([0-9]*\\) packets transmitted.*/\\1/p' "$d/$t")
  rx=$(sed -n 's/.* \\([0-9]*\\) \\(packets \\)\\{{0,1\\}}received.*/\\1/p' "$d/$t")
  avg=$(sed -n 's#^r[a-z]* min/avg/max/[a-z]* = [0-9.]*/\\([0-9.]*\\)/.*#\\1#p' "$d/$t")
  echo "$t ${{tx:-0}} ${{rx:-0}} ${{avg:--}}"
done
rm -rf "$d"
"""
