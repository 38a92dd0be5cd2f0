"""k3s on the mesh (pure): each node's ``/etc/rancher/k3s/config.yaml``.

k3s reads ``/etc/rancher/k3s/config.yaml`` at start; each key is one of the command-line flags of
``k3s server`` or ``k3s agent`` without its leading ``--``, repeatable flags as YAML lists, boolean
flags as ``true``/``false`` (https://docs.k3s.io/installation/configuration#configuration-file). k3s
turns every entry into ``--key=value`` (k3s-io/k3s pkg/configfilearg/parser.go, ``readConfigFile``),
so every key written here is checked against the flag lists in k3s-io/k3s pkg/cli/cmds/server.go
(``ServerFlags``) and pkg/cli/cmds/agent.go (``NewAgentCommand``), cited next to each key below.

The cluster runs over the mesh: every node's k3s address is its overlay address, flannel's VXLAN runs
inside the WireGuard interface, and the API server (port 6443) is reached on a server's overlay
address. Decisions, documented in docs/k3s.md:

- Servers are the nodes whose role is ``server``; the *first server* is the first of them in inventory
  order. Agents, and further servers, join the first server unless told otherwise (``--server``).
  With two or more servers the first one gets ``cluster-init`` (embedded etcd, which a cluster of
  several servers needs); a single server keeps k3s' default datastore (SQLite), and k3s converts it
  to etcd when ``cluster-init`` appears later (docs.k3s.io/datastore/ha-embedded, "Existing
  single-node clusters").
- ``node-name`` is the wiremesh node name: k3s refuses two nodes with the same hostname
  (docs.k3s.io/installation/requirements#prerequisites), and cloud images often share one.
- A node has a usable address when it has every overlay address its mesh hands out: the IPv4
  ``address`` always, and ``address6`` too when the mesh is dual-stack (has ``cidr6``). wiremesh
  allocates both when it loads an inventory, so a node without them comes only from an inventory built
  in code; it is refused rather than given a single-stack ``node-ip`` that a dual-stack k3s rejects
  ("cluster-cidr and node-ip must share the same IP version", k3s-io/k3s#11735).
- The cluster token is never written by wiremesh (the inventory holds no secrets): ``token-file`` only
  where the user names one; otherwise the token comes from the install command (``K3S_TOKEN``) or a
  drop-in file in ``/etc/rancher/k3s/config.yaml.d/``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network
from typing import Final

from wiremesh.errors import ValidationError, quote
from wiremesh.model.addressing import IPAddress, IPNetwork
from wiremesh.model.facts import DEFAULT_UNDERLAY_MTU, WIREGUARD_OVERHEAD
from wiremesh.model.inventory import (
    K3S_ROLES,
    MTU_MIN_IPV6,
    InvalidInventory,
    Inventory,
    MeshSettings,
    Node,
    did_you_mean,
)
from wiremesh.model.safe import UnsafeValue, comment_text

CONFIG_PATH: Final = "/etc/rancher/k3s/config.yaml"
"""Where k3s looks for its config file (docs.k3s.io/installation/configuration#configuration-file)."""

DROP_IN_DIR: Final = "/etc/rancher/k3s/config.yaml.d"
"""Drop-in files read after config.yaml, last value wins (same page, "Multiple Config Files")."""

SERVER_PORT: Final = 6443
"""The k3s supervisor and Kubernetes API port (docs.k3s.io/installation/requirements#networking)."""

# k3s' default pod and service networks (pkg/cli/cmds/server.go: "default: 10.42.0.0/16" and
# "default: 10.43.0.0/16" in the usage of --cluster-cidr and --service-cidr).
CLUSTER_CIDR4: Final = IPv4Network("10.42.0.0/16")
SERVICE_CIDR4: Final = IPv4Network("10.43.0.0/16")
# A dual-stack cluster needs an IPv6 pod and service network too (docs.k3s.io/networking/
# basic-network-options#dual-stack-ipv4--ipv6-networking, which recommends a /56 and a /112; its
# example uses the documentation prefix 2001:db8::/32, not usable in a real cluster). These are ULA
# networks (RFC 4193) mirroring 10.42/10.43; since they are not routed on the Internet, pods' IPv6
# traffic leaving the cluster is masqueraded (flannel-ipv6-masq, as that page advises for ULA).
CLUSTER_CIDR6: Final = IPv6Network("fd00:42::/56")
SERVICE_CIDR6: Final = IPv6Network("fd00:43::/112")

# Flannel's VXLAN overhead. flannel derives the pod MTU from the MTU of the interface it runs on
# (here the WireGuard interface, named by flannel-iface) minus 50 bytes (flannel-io/flannel
# pkg/backend/vxlan/vxlan_network.go: ``encapOverhead = 50``; ``MTU() = ExtIface.Iface.MTU -
# encapOverhead``): outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. Its IPv6 VXLAN device
# (flannel-v6.1) gets the kernel's default, 70 bytes below (outer IPv6 is 40 bytes; Linux
# drivers/net/vxlan: VXLAN6_HEADROOM; flannel-io/flannel#1781), so IPv6 pod traffic has 20 bytes less.
VXLAN_OVERHEAD: Final = 50
VXLAN6_OVERHEAD: Final = 70

POD_MTU_MIN: Final = MTU_MIN_IPV6
"""Below 1280 bytes a link cannot carry IPv6 (RFC 8200 section 5; Linux disables IPv6 on such a
device), so IPv6 pods break; for an IPv4-only cluster it also means a mesh MTU far below the usual 1420
(an unusual underlay, and more packets, each with up to 50 + 80 bytes of VXLAN and WireGuard headers,
for the same data). We warn below it."""

AUTO_MTU_ASSUMED: Final = DEFAULT_UNDERLAY_MTU - WIREGUARD_OVERHEAD
"""For ``mtu = "auto"`` the interface MTU is only known at apply time, per host: 1420 on the usual
1500-byte underlay. The pod MTU is derived by flannel on each host from the real value anyway; this is
only for the warning and the comment in the file."""

_FLAG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")

Value = str | bool | tuple[str, ...]
"""A config value: a string, a boolean flag, or a list for a repeatable flag."""


@dataclass(frozen=True)
class K3sRequest:
    """What the user asks for one node beyond the inventory (``wiremesh k3s config`` options)."""

    role: str | None = None  # None: the node's k3s_role
    server: str | None = None  # the node to join; None: the first server
    token_file: str | None = None  # an absolute path on the host
    node_external_ips: tuple[IPAddress, ...] = ()


@dataclass(frozen=True)
class PodMtu:
    """The MTU pods get, derived from the WireGuard interface's MTU."""

    interface: str
    mesh: int  # the interface MTU the numbers come from
    assumed: bool  # True for mtu = "auto": ``mesh`` is an assumption
    ipv4: int
    ipv6: int | None  # the IPv6 path (dual-stack only)

    @property
    def smallest(self) -> int:
        """The smallest pod path MTU."""
        return self.ipv4 if self.ipv6 is None else min(self.ipv4, self.ipv6)

    def describe(self) -> str:
        """One line for the file's header, e.g. ``pod MTU 1370 = wg0's MTU 1420 - 50 (VXLAN)``."""
        source = f"{self.interface}'s MTU {self.mesh}"
        if self.assumed:
            source = f"{self.interface}'s MTU (mtu = auto: {self.mesh} on a 1500-byte underlay)"
        text = f"pod MTU {self.ipv4} = {source} - {VXLAN_OVERHEAD} (flannel VXLAN)"
        if self.ipv6 is not None:
            text += f"; IPv6 {self.ipv6} (- {VXLAN6_OVERHEAD})"
        return text

    def warnings(self) -> list[str]:
        """Warnings when pods would get too small an MTU (see :data:`POD_MTU_MIN`)."""
        if self.smallest >= POD_MTU_MIN:
            return []
        # (With mtu = "auto" the assumed 1420 gives 1370/1350: no warning.)
        how = "raise it with 'wiremesh mesh set --mtu N' if the underlay allows"
        if self.ipv6 is not None and self.ipv6 < POD_MTU_MIN:
            return [
                f"IPv6 pod traffic would get an MTU of {self.ipv6} ({self.interface}'s MTU "
                f"{self.mesh} - {VXLAN6_OVERHEAD} for flannel's IPv6 VXLAN), below the IPv6 minimum "
                f"of {POD_MTU_MIN} (RFC 8200): IPv6 in pods will not work; a dual-stack cluster needs "
                f"a mesh MTU of at least {POD_MTU_MIN + VXLAN6_OVERHEAD} ({how})"
            ]
        return [
            f"pods would get an MTU of {self.ipv4} ({self.interface}'s MTU {self.mesh} - "
            f"{VXLAN_OVERHEAD} for flannel's VXLAN), below {POD_MTU_MIN}, the IPv6 minimum "
            f"(RFC 8200): pods cannot use IPv6, and data takes more packets, each with up to 130 bytes of "
            f"VXLAN and WireGuard headers; a "
            f"mesh MTU of at least {POD_MTU_MIN + VXLAN_OVERHEAD} avoids this ({how})"
        ]


@dataclass(frozen=True)
class K3sConfig:
    """The k3s configuration of one node: ordered settings, and warnings for the user."""

    node: str
    role: str
    settings: tuple[tuple[str, Value], ...]
    pod_mtu: PodMtu
    joins: str | None = None  # the node whose server this one joins

    @property
    def warnings(self) -> tuple[str, ...]:
        """Things the user should know (the pod MTU)."""
        return tuple(self.pod_mtu.warnings())

    def get(self, key: str) -> Value | None:
        """The value of ``key``, or None."""
        return dict(self.settings).get(key)

    def yaml(self, header: tuple[str, ...] = ()) -> str:
        """The config file text: ``header`` lines as comments (a line may already start with
        ``#``), a line on the pod MTU, then the settings."""
        lines = [h if h.startswith("#") else f"# {h}" for h in header]
        lines.append(f"# {self.pod_mtu.describe()}")
        lines = [comment_text(line, "a comment in config.yaml") for line in lines]
        return "\n".join(lines) + "\n" + render_yaml(self.settings)


def pod_mtu(mesh: MeshSettings) -> PodMtu:
    """The pods' MTU on a mesh (for ``mtu = "auto"``: as on a 1500-byte underlay)."""
    assumed = not isinstance(mesh.mtu, int)
    mtu = mesh.mtu if isinstance(mesh.mtu, int) else AUTO_MTU_ASSUMED
    ipv6 = mtu - VXLAN6_OVERHEAD if mesh.cidr6 is not None else None
    return PodMtu(mesh.interface, mtu, assumed, mtu - VXLAN_OVERHEAD, ipv6)


def yaml_string(text: str) -> str:
    """``text`` as a YAML double-quoted scalar.

    Every string is quoted, so nothing is read as another type (YAML 1.1, which k3s' gopkg.in/yaml.v2
    follows, reads ``on``/``yes`` as booleans and ``1e3`` as a number) and ``:`` in IPv6 addresses and
    URLs is never taken for a mapping. A JSON string is a valid YAML double-quoted scalar (YAML 1.2
    section 1.3 is a JSON superset; its ``\\"``, ``\\\\`` and ``\\uXXXX`` escapes are YAML 1.1's too);
    control characters are refused where values are checked, so only those escapes occur; and
    here again (:func:`~wiremesh.model.safe.comment_text`'s rule): YAML 1.1 also breaks lines at
    U+0085, U+2028 and U+2029, which JSON leaves unescaped.
    """
    return json.dumps(comment_text(text, "a value in config.yaml"), ensure_ascii=False)


def render_yaml(settings: tuple[tuple[str, Value], ...]) -> str:
    """Flat YAML: ``key: "string"``, ``key: true``, or a key and its list items, one per line.

    Keys are k3s flag names (checked: lowercase words joined by '-'), strings are quoted
    (:func:`yaml_string`): nothing can start another key, item or comment.
    """
    out: list[str] = []
    for key, value in settings:
        if not _FLAG.fullmatch(key):
            raise UnsafeValue("the k3s setting", key, "it is not a k3s flag name")
        if isinstance(value, bool):
            out.append(f"{key}: {'true' if value else 'false'}")
        elif isinstance(value, tuple):
            out.append(f"{key}:")
            out.extend(f"  - {yaml_string(item)}" for item in value)
        else:
            out.append(f"{key}: {yaml_string(value)}")
    return "".join(f"{line}\n" for line in out)


def _role_of(node: Node, name: str, request: K3sRequest) -> str | None:
    return request.role if node.name == name and request.role is not None else node.k3s_role


def _servers(inventory: Inventory, name: str, request: K3sRequest) -> list[Node]:
    return [n for n in inventory if _role_of(n, name, request) == "server"]


def _check_request(node: Node, role: str, request: K3sRequest) -> None:
    if role not in K3S_ROLES:
        raise ValidationError(
            f"{quote(role)} is not a k3s role{did_you_mean(role, list(K3S_ROLES))}",
            'use "server" or "agent"',
        )
    path = request.token_file
    if path is not None and (not path.startswith("/") or not path.isprintable() or path == "/"):
        raise ValidationError(
            f"--token-file {quote(path)} is not an absolute path on the host",
            "give the full path of the token file on the node, e.g. /etc/rancher/k3s/token",
        )
    families = [ip.version for ip in request.node_external_ips]
    if len(set(families)) != len(families):
        raise ValidationError(
            f"node {quote(node.name)}: more than one external IPv{families[0]} address",
            "give at most one IPv4 and one IPv6 --node-external-ip",
        )


def _check_address(inventory: Inventory, node: Node) -> None:
    if inventory.mesh.cidr6 is not None and node.address6 is None:
        raise ValidationError(
            f"node {quote(node.name)} has no IPv6 overlay address but the mesh is dual-stack "
            f"(cidr6 {inventory.mesh.cidr6}): k3s needs both as its node-ip",
            f"give it one ('wiremesh node set {node.name} --address6 IP'), or let wiremesh allocate "
            "one: remove the node's address6 line and run any wiremesh command that loads the file",
        )


def _check_overlaps(inventory: Inventory) -> None:
    """The mesh's networks must not overlap k3s' pod and service networks."""
    mesh = inventory.mesh
    ours: list[tuple[IPNetwork, str]] = [(mesh.cidr, "mesh cidr")]
    if mesh.cidr6 is not None:
        ours.append((mesh.cidr6, "mesh cidr6"))
    ours += [
        (net, f"allowed_ips of node {quote(n.name)}") for n in inventory for net in n.allowed_ips
    ]
    theirs: list[tuple[IPNetwork, str]] = [
        (CLUSTER_CIDR4, "pod network (cluster-cidr)"),
        (SERVICE_CIDR4, "service network (service-cidr)"),
    ]
    if mesh.cidr6 is not None:
        theirs += [
            (CLUSTER_CIDR6, "IPv6 pod network (cluster-cidr)"),
            (SERVICE_CIDR6, "IPv6 service network (service-cidr)"),
        ]
    for net, what in ours:
        for k3s_net, k3s_what in theirs:
            if net.version == k3s_net.version and net.overlaps(k3s_net):
                raise ValidationError(
                    f"{what} {net} overlaps k3s' {k3s_what} {k3s_net}: pods and services would be "
                    "unreachable",
                    f"use a mesh network outside {k3s_net} (k3s' networks are 10.42.0.0/16 and "
                    "10.43.0.0/16, and fd00:42::/56 and fd00:43::/112 when dual-stack)",
                )


def _server_node(inventory: Inventory, node: Node, role: str, request: K3sRequest) -> Node | None:
    """The node whose server ``node`` joins: ``--server``, else the first server (None for it)."""
    servers = _servers(inventory, node.name, request)
    if request.server is not None:
        target = inventory.node(request.server)  # unknown: the did-you-mean error
        if target.name == node.name:
            raise ValidationError(
                f"--server {target.name}: a node cannot join itself",
                "name another server, or leave --server out for the first server of the cluster",
            )
        if _role_of(target, node.name, request) != "server":
            others = [n.name for n in servers if n.name != node.name]
            which = (
                f"name a server ({', '.join(others)})"
                if others
                else "leave --server out (there is no other server to join)"
            )
            raise ValidationError(
                f"--server {target.name}: node {quote(target.name)} is not a k3s server "
                f"(its role: {target.k3s_role or 'none'})",
                f"{which}, or make it one: wiremesh node set {target.name} --k3s-role server",
            )
        return target
    if not servers:
        raise ValidationError(
            f"k3s agent {quote(node.name)} has no server to join: no node of the mesh is a k3s server",
            "give a node the server role: wiremesh node set NAME --k3s-role server",
        )
    first = servers[0]
    if role == "server" and first.name == node.name:
        return None
    return first


def node_config(inventory: Inventory, name: str, request: K3sRequest | None = None) -> K3sConfig:
    """The k3s configuration of node ``name``.

    Raises :class:`ValidationError` for an unknown node, a node without a role (none in the
    inventory and none asked for), a ``--server`` that is not a server (or the node itself), an agent
    with no server in the mesh, a node without a usable address, and mesh networks overlapping k3s'.
    """
    request = request or K3sRequest()
    node = inventory.node(name)
    role = _role_of(node, name, request)
    if role is None:
        raise ValidationError(
            f"node {quote(node.name)} has no k3s role",
            f"pass --role server|agent, or record it: wiremesh node set {node.name} "
            "--k3s-role server|agent",
        )
    _check_request(node, role, request)
    _check_address(inventory, node)
    _check_overlaps(inventory)
    join = _server_node(inventory, node, role, request)
    mesh = inventory.mesh
    dual = mesh.cidr6 is not None and node.address6 is not None
    overlay = [str(node.address)] + ([str(node.address6)] if dual else [])

    settings: list[tuple[str, Value]] = []
    if join is not None:
        # --server "(cluster) Server to connect to": agent.go; server.go "used to join a cluster".
        # The IPv4 overlay address: every node has one.
        settings.append(("server", f"https://{join.address}:{SERVER_PORT}"))
    if request.token_file is not None:
        # --token-file: server.go "(cluster) File containing the token"; agent.go likewise.
        settings.append(("token-file", request.token_file))
    # --node-name "(agent/node) Node name": agent.go NodeNameFlag, also in ServerFlags.
    settings.append(("node-name", node.name))
    # --node-ip "(agent/networking) IPv4/IPv6 addresses to advertise for node": agent.go NodeIPFlag,
    # also in ServerFlags. One comma-separated value: k3s splits it (pkg/util/net.go
    # ParseStringSliceToIPs), as in the dual-stack docs' "--node-ip=<v4>,<v6>".
    settings.append(("node-ip", ",".join(overlay)))
    if request.node_external_ips:
        # --node-external-ip "(agent/networking) IPv4/IPv6 external IP addresses to advertise for
        # node": agent.go NodeExternalIPFlag, also in ServerFlags. Only when asked: it changes what
        # other components prefer (flannel-external-ip, the default advertise address).
        external = ",".join(str(ip) for ip in request.node_external_ips)
        settings.append(("node-external-ip", external))
    if role == "server":
        # --advertise-address "(listener) IPv4/IPv6 address that apiserver uses to advertise to
        # members of the cluster": server.go. The overlay address, so agents and pods reach the
        # API over the mesh.
        settings.append(("advertise-address", str(node.address)))
        # --tls-san "(listener) Add additional hostnames or IPv4/IPv6 addresses as Subject
        # Alternative Names on the server TLS cert": server.go (a repeatable flag: a YAML list).
        # <node>.<mesh> is the name apply writes into every host's /etc/hosts.
        settings.append(("tls-san", (*overlay, f"{node.name}.{mesh.name}")))
    # --flannel-iface "(agent/networking) Override default flannel interface": agent.go
    # FlannelIfaceFlag, also in ServerFlags. VXLAN then runs inside the WireGuard tunnel.
    settings.append(("flannel-iface", mesh.interface))
    if role == "server" and join is None and len(_servers(inventory, name, request)) > 1:
        # --cluster-init "(cluster) Initialize a new cluster using embedded Etcd": server.go.
        settings.append(("cluster-init", True))
    if role == "server" and dual:
        # --cluster-cidr / --service-cidr "(networking) IPv4/IPv6 network CIDRs to use for pod IPs /
        # service IPs": server.go. Dual-stack needs both families on every server
        # (docs.k3s.io/networking/basic-network-options#dual-stack-ipv4--ipv6-networking).
        settings.append(("cluster-cidr", f"{CLUSTER_CIDR4},{CLUSTER_CIDR6}"))
        settings.append(("service-cidr", f"{SERVICE_CIDR4},{SERVICE_CIDR6}"))
        # --flannel-ipv6-masq "(networking) Enable IPv6 masquerading for pod": server.go; the
        # dual-stack docs advise it for ULA pod networks. Must match on all servers, as the two above.
        settings.append(("flannel-ipv6-masq", True))
    return K3sConfig(
        node.name,
        role,
        tuple(settings),
        pod_mtu(mesh),
        join.name if join is not None else None,
    )


def cluster_configs(inventory: Inventory) -> dict[str, K3sConfig]:
    """The configuration of every node that has a ``k3s_role``, by name, in inventory order.

    Every problem is reported at once (:class:`InvalidInventory`); nothing is returned then.
    """
    out: dict[str, K3sConfig] = {}
    problems: list[ValidationError] = []
    for node in inventory:
        if node.k3s_role is None:
            continue
        try:
            out[node.name] = node_config(inventory, node.name)
        except ValidationError as exc:
            if exc.message not in [p.message for p in problems]:  # mesh-wide ones come once
                problems.append(exc)
    if problems:
        raise InvalidInventory(problems, "k3s")
    return out
