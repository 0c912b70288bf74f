"""The cluster's alive nodes as the gateway looks at them: which is the head
(whose loss the gateway's actors must not share), what each offers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HEAD_RESOURCE", "NodeView", "snapshot"]

# Ray gives the head node this resource (and no other node): how it is told apart.
HEAD_RESOURCE = "node:__internal_head__"


@dataclass(frozen=True)
class NodeView:
    node_id: str
    is_head: bool
    resources: Mapping[str, float] = field(default_factory=dict)   # totals
    labels: Mapping[str, str] = field(default_factory=dict)
    address: str = ""


def snapshot(ray_nodes: Iterable[Mapping[str, Any]]) -> list[NodeView]:
    """The alive nodes of `ray.nodes()`."""
    out = []
    for n in ray_nodes:
        if not n.get("Alive"):
            continue
        resources = dict(n.get("Resources") or {})
        out.append(NodeView(node_id=str(n["NodeID"]), is_head=HEAD_RESOURCE in resources, resources=resources,
                            labels=dict(n.get("Labels") or {}), address=str(n.get("NodeManagerAddress", ""))))
    return out
