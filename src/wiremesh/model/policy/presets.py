"""Presets: the rules common stacks need, derived from what the inventory already says.

``k3s`` uses three groups derived from the nodes' ``k3s_role``: ``k3s-servers``, ``k3s-agents`` and
``k3s-nodes`` (both). Its rules are the "Inbound Rules for K3s Nodes" of the k3s documentation
(https://docs.k3s.io/installation/requirements#inbound-rules-for-k3s-nodes; k3s-io/docs,
docs/installation/requirements.md):

=====  =========  =========  ===========  ==========================================
proto  port       source     destination  description
=====  =========  =========  ===========  ==========================================
TCP    2379-2380  Servers    Servers      Required only for HA with embedded etcd
TCP    6443       Agents     Servers      K3s supervisor and Kubernetes API Server
UDP    8472       All nodes  All nodes    Required only for Flannel VXLAN
TCP    10250      All nodes  All nodes    Kubelet metrics and API
=====  =========  =========  ===========  ==========================================

6443 is opened from every k3s node, not only agents: the same page says "The K3s server needs port
6443 to be accessible by all nodes", and further servers join the first one through it. Left out: the
Flannel WireGuard backends (51820/51821, not used over a WireGuard mesh) and the embedded registry
Spegel (5001, and 6443 between all nodes), which is opt-in in k3s.

All four are *overlay only*: the same page warns that the VXLAN port "should not be exposed to the
world as it opens up your cluster network to be accessed by anyone", and the API, kubelet and etcd
have no business on a public interface either when the cluster runs over the mesh. With the guard on,
they are dropped on every other interface, except the ones k3s' own pod traffic arrives on: the CNI
bridge ``cni0`` (k3s' flannel CNI config) and flannel's VXLAN devices ``flannel.1`` and
``flannel-v6.1`` (``flannel.<VNI>``/``flannel-v6.<VNI>`` with the default VNI 1,
flannel-io/flannel pkg/backend/vxlan/vxlan.go). Pods reach the API server (the ``kubernetes`` service
is DNAT-ed to a server's node IP, port 6443) and the metrics server reaches kubelets through them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from wiremesh.model.inventory import Node
from wiremesh.model.names import NodeName
from wiremesh.model.policy.ports import PortSpec, Proto
from wiremesh.model.policy.rules import Action, Rule

K3S_SERVERS = "k3s-servers"
K3S_AGENTS = "k3s-agents"
K3S_NODES = "k3s-nodes"
DERIVED_GROUPS = (K3S_SERVERS, K3S_AGENTS, K3S_NODES)
"""Groups derived from ``k3s_role``: reserved names, usable in any rule."""


@dataclass(frozen=True)
class Preset:
    """A named set of rules, and the interfaces the guard must leave alone for them."""

    name: str
    rules: tuple[Rule, ...]
    guard_exempt: tuple[str, ...] = ()


def _k3s_rule(label: str, sources: str, targets: str, spec: PortSpec) -> Rule:
    return Rule(
        sources=(sources,),
        targets=(targets,),
        ports=(spec,),
        action=Action.ALLOW,
        overlay_only=True,
        origin=f"k3s preset ({label})",
    )


K3S = Preset(
    name="k3s",
    rules=(
        _k3s_rule("embedded etcd", K3S_SERVERS, K3S_SERVERS, PortSpec(Proto.TCP, 2379, 2380)),
        _k3s_rule("supervisor and API", K3S_NODES, K3S_SERVERS, PortSpec(Proto.TCP, 6443, 6443)),
        _k3s_rule("flannel VXLAN", K3S_NODES, K3S_NODES, PortSpec(Proto.UDP, 8472, 8472)),
        _k3s_rule("kubelet", K3S_NODES, K3S_NODES, PortSpec(Proto.TCP, 10250, 10250)),
    ),
    guard_exempt=("cni0", "flannel.1", "flannel-v6.1"),
)

PRESETS: dict[str, Preset] = {K3S.name: K3S}


def derived_members(nodes: Sequence[Node]) -> dict[str, frozenset[NodeName]]:
    """The members of each derived group."""
    servers = frozenset(n.name for n in nodes if n.k3s_role == "server")
    agents = frozenset(n.name for n in nodes if n.k3s_role == "agent")
    return {K3S_SERVERS: servers, K3S_AGENTS: agents, K3S_NODES: servers | agents}
