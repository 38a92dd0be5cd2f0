"""Every external program that wiremesh and its tests run has a package that scripts/install-deps
installs (or that every Debian/Ubuntu system has).

The programs are found, not listed by hand: argv literals passed to subprocess, ``Lab.exec`` and
``nsenter_argv`` in src/ and tests/ (and ``sh -c`` scripts among them), the shell scripts wiremesh
runs on hosts (every builder in :mod:`wiremesh.remote`), the lab's own host scripts, and the lab's
declared prerequisites. A program found nowhere in :data:`PACKAGES` fails the test, so a new tool
cannot slip in without its package (the tests once called ``nft``, which install-deps did not install,
and the README's test command failed on a fresh machine).
"""

from __future__ import annotations

import ast
import re
from ipaddress import ip_address
from pathlib import Path

from wiremesh.lab import host, image, nat, prereq, vm
from wiremesh.model.live import IpStep, LiveSteps, WgStep
from wiremesh.model.policy.ports import Probe, Proto
from wiremesh.remote import live, nft, scripts, textfile

ROOT = Path(__file__).resolve().parents[2]

PACKAGES: dict[str, str] = {
    **dict.fromkeys(
        [
            "cat",
            "chmod",
            "cp",
            "cut",
            "date",
            "head",
            "ln",
            "ls",
            "mkdir",
            "mktemp",
            "mv",
            "pwd",
            "rm",
            "sha256sum",
            "sleep",
            "stat",
            "tail",
            "timeout",
            "tr",
            "wc",
        ],
        "coreutils",
    ),
    "awk": "mawk",
    "grep": "grep",
    "sed": "sed",
    "sh": "dash",
    "hostname": "hostname",
    "getent": "libc-bin",
    "mount": "mount",
    "umount": "mount",
    "mountpoint": "util-linux",
    "nsenter": "util-linux",
    "unshare": "util-linux",
    "flock": "util-linux",
    "setsid": "util-linux",
    "bash": "bash",
    "ip": "iproute2",
    "ping": "iputils-ping",
    "sysctl": "procps",
    "ps": "procps",
    "pgrep": "procps",
    "kill": "procps",
    "modprobe": "kmod",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
    "ssh-keyscan": "openssh-client",
    "wg": "wireguard-tools",
    "wg-quick": "wireguard-tools",
    "wireguard-go": "wireguard-go",
    "nft": "nftables",
    "iptables-restore": "iptables",
    "python3": "python3",
    "promtool": "prometheus",
    "prometheus": "prometheus",
    "systemd-analyze": "systemd",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mmdebstrap": "mmdebstrap",
    "mkfs.ext4": "e2fsprogs",
    "setpriv": "util-linux",
    "chroot": "coreutils",
}
"""Program -> the Debian/Ubuntu package that provides it."""

BASE = {"coreutils", "dash", "bash", "grep", "sed", "mawk", "hostname", "libc-bin", "mount"}
"""Essential or required packages: on every Debian and Ubuntu system, even a minimal container."""

OPTIONAL = {"systemctl": "only where systemd runs; the scripts check for it first"}
"""Programs the host scripts use only when present (never needed on this machine)."""

PREFIXES = set(["if", "then", "else", "elif", "while", "until", "do", "!", "time"])
"""Words before a command that are not the command."""
NOT_PROGRAMS = {
    *["fi", "done", "for", "case", "esac", "in", "{", "}"],
    *[
        "echo",
        "printf",
        "read",
        "set",
        "export",
        "exit",
        "return",
        "cd",
        "test",
        "[",
        ":",
        ".",
        "eval",
        "exec",
        "trap",
        "wait",
        "kill",
    ],
    *["shift", "local", "true", "false", "unset", "command", "umask", "break", "continue"],
}
"""Shell keywords and builtins (dash's)."""


def _unquote(s: str) -> str:
    """Shell text without quoted literals and comments; command substitutions become commands."""
    out: list[str] = []
    i, n = 0, len(s)

    def substitution(j: int) -> tuple[str, int]:
        depth, k = 1, j
        while k < n and depth:
            c = s[k]
            if c == "\\":
                k += 2
                continue
            if c == "'":
                k = s.index("'", k + 1) + 1
                continue
            depth += {"(": 1, ")": -1}.get(c, 0)
            k += 1
        return s[j : k - 1], k

    while i < n:
        c = s[i]
        if s.startswith("$((", i):  # arithmetic, not a command
            i = s.index("))", i) + 2
            out.append(" Q ")
        elif c == "\\":
            i += 2
        elif c == "'":
            i = s.index("'", i + 1) + 1
            out.append(" Q ")
        elif c == '"':
            i += 1
            while i < n and s[i] != '"':
                if s[i] == "\\":
                    i += 2
                elif s.startswith("$(", i) and not s.startswith("$((", i):
                    inner, i = substitution(i + 2)
                    out.append(f" ; {_unquote(inner)} ; Q ")
                else:
                    i += 1
            i += 1
            out.append(" Q ")
        elif s.startswith("$(", i):
            inner, i = substitution(i + 2)
            out.append(f" ; {_unquote(inner)} ; Q ")
        elif c == "#" and (i == 0 or s[i - 1] in " \t\n;"):
            while i < n and s[i] != "\n":
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def shell_commands(script: str) -> set[str]:
    """The programs a shell script runs (first words of its simple commands)."""
    text = _unquote(script.replace("\\\n", " "))
    functions = set(re.findall(r"(?m)^\s*([A-Za-z_]\w*)\s*\(\)", text))
    found: set[str] = set()
    for segment in re.split(r"&&|\|\||;;|[;&|\n(){}]", text):
        words = segment.split()
        while words:
            if re.fullmatch(r"\d*(>>|>|<|>&|<&)", words[0]):
                words = words[2:]  # a redirection and its target
            elif re.match(r"^([A-Za-z_]\w*=|\d*[<>])", words[0]) or words[0] in PREFIXES:
                words = words[1:]
            else:
                break
        if not words or words[0] in ("Q", *NOT_PROGRAMS) or words[0] in functions:
            continue
        if re.fullmatch(r"[A-Za-z/][\w.+/-]*", words[0]) and not words[0].endswith(")"):
            found.add(words[0].rsplit("/", 1)[-1])
    return found


def host_scripts() -> list[str]:
    """Every script wiremesh runs on hosts, and the lab's host scripts."""
    steps = LiveSteps(
        (IpStep("a", ("link", "set"), ("link", "set")),), (WgStep("w", ("peer", "k")),), ()
    )
    out = [
        scripts.observe("wg0", "m", ("192.0.2.1",), ("/etc/x",)),
        scripts.observe("wg0", full=False),
        scripts.ensure_key("wg0"),
        scripts.write_hosts_block("m"),
        scripts.remove_hosts_block("m"),
        scripts.enable_forwarding(True, True),
        scripts.write_file("/etc/x/y", 0o600),
        scripts.enable_service("wg0"),
        scripts.tear_down("wg0"),
        scripts.ping_all(["10.0.0.1"]),
        scripts.remove_managed_file("/etc/x"),
        textfile.collector_script("n", "m", "wg0", [], "/var/lib/x"),
        textfile.activate("wg0", "/var/lib/wiremesh/metrics-wg0.sh"),
        textfile.deactivate("wg0", "/var/lib/x/wiremesh-wg0.prom"),
    ]
    probes = [Probe(Proto.TCP, 22), Probe(Proto.ICMP), Probe(Proto.UDP, 53)]
    out += [
        nft.read("wg0"),
        nft.load("wg0"),
        nft.persist("wg0"),
        nft.remove("wg0"),
        nft.begin_confirmed("wg0", "t1", 30),
        nft.UNDO_SCRIPT,
        nft.confirm("wg0", "t1"),
        nft.rollback("wg0", "t1"),
        nft.probe([nft.ProbeTarget(ip_address("10.0.0.1"), p) for p in probes]),
    ]
    for method in live.METHODS:
        out.append(live.live_script("wg0", steps, True, False, method, at=1.0))
        out.append(live.live_script("wg0", steps, True, True, method))
    for module in (host, nat):
        out += [
            v for k, v in vars(module).items() if k.isupper() and isinstance(v, str) and "\n" in v
        ]
    # The VM image recipe runs on this machine; what its here-documents hold (the initramfs hook,
    # sshd's config) runs inside the image, which brings its own packages.
    out.append(re.sub(r"(?s)<<'EOF'\n.*?\nEOF\n", "\n", image.RECIPE))
    return out


CALLS = {"run": 0, "Popen": 0, "check_output": 0, "check_call": 0, "exec": 1, "exec_argv": 1}
CALLS["nsenter_argv"] = 1


def python_commands() -> dict[str, set[str]]:
    """Program -> files, from argv literals in src/ and tests/ (and their ``sh -c`` scripts)."""
    found: dict[str, set[str]] = {}
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "tests").rglob("*.py")]:
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            index = CALLS.get(name or "")
            if index is None or len(node.args) <= index:
                continue
            argv = node.args[index]
            if not isinstance(argv, ast.List | ast.Tuple) or not argv.elts:
                continue
            words = [e.value if isinstance(e, ast.Constant) else None for e in argv.elts]
            if not isinstance(words[0], str):
                continue
            found.setdefault(words[0], set()).add(where)
            if words[0] == "sh" and len(words) > 2 and isinstance(words[2], str):
                for program in shell_commands(words[2]):
                    found.setdefault(program, set()).add(f"{where} (sh -c)")
    return found


def installed_by_install_deps() -> set[str]:
    text = (ROOT / "scripts" / "install-deps").read_text()
    match = re.search(r"PKGS=\(([^)]*)\)", text)
    assert match, "scripts/install-deps has no PKGS=(...) list"
    return set(match.group(1).split())


def test_the_scanner_finds_commands_and_only_commands() -> None:
    script = """
# a comment: rm -rf /
x=$(date +%s | awk '{ print $1 }')   # awk's "print" is no command
if [ -f "$x" ]; then cp -p "$x" "$(mktemp)"; fi
fail() { echo "$1" >&2; exit 1; }
f() { wg set wg0 "$@" 2>"$err" || fail "wg set"; }
echo "$(stat -c %a "$p")" > /tmp/out
i=$((i + 1))
"""
    assert shell_commands(script) == {"date", "awk", "cp", "mktemp", "wg", "stat"}


def test_every_program_has_a_package_that_install_deps_installs() -> None:
    programs: dict[str, set[str]] = python_commands()
    for script in host_scripts():
        for program in shell_commands(script):
            programs.setdefault(program, set()).add("a host script")
    declared = {**prereq.PROGRAMS, **prereq.NAT_PROGRAMS, **vm.VM_PROGRAMS, **image.IMAGE_PROGRAMS}
    for program in declared:
        programs.setdefault(program, set()).add("wiremesh.lab.prereq, .vm, .image")
    unknown = {p: sorted(w) for p, w in programs.items() if p not in PACKAGES and p not in OPTIONAL}
    assert not unknown, f"programs with no known package (add them to PACKAGES): {unknown}"
    packages = installed_by_install_deps()
    missing = {
        p: (PACKAGES[p], sorted(programs[p]))
        for p in programs
        if p in PACKAGES and PACKAGES[p] not in packages | BASE
    }
    assert not missing, f"scripts/install-deps does not install: {missing}"
    for program, package in declared.items():
        assert PACKAGES[program] == package, program
