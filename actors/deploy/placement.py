"""Where the gateway's actors may run: off the head node when the cluster has
workers that can host them (issue 19, docs/head-node.md section 7).

Ray keeps the cluster's metadata in the head's GCS; with GCS fault tolerance
the actors on worker nodes serve on through the head's loss, the ones on the
head die with it. A zero-CPU actor without resources is feasible on a head
started with `--num-cpus 0` (measured: 1 to 3 of 4 landed there), so avoiding
the head takes a label selector on Ray's `ray.io/node-id` label.

A pure decision: a snapshot of the alive nodes (`NodeView`, built from
`ray.nodes()` by `snapshot`) and an actor's Ray options in, a typed
`Placement` out. The head's node id only ever goes into the options handed to
Ray at `up`, never into a spec: the head's id changes when it restarts, and a
digest holding it would replace every actor at the next `up`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from actors.ops.cluster_nodes import HEAD_RESOURCE, NodeView, snapshot

__all__ = ["HEAD_RESOURCE", "NODE_ID_LABEL", "AvoidHead", "HeadAllowed", "NodeView", "NoPlace", "OnWorkers",
           "Placement", "decide", "label_matches", "options_for", "snapshot"]

# Every node carries its id under this label (Ray 2.60); selectors may negate it.
NODE_ID_LABEL = "ray.io/node-id"


class AvoidHead(str, enum.Enum):
    AUTO = "auto"      # off the head when a worker can host the actor, else on it (with a warning)
    ALWAYS = "always"  # off the head, or `up` fails saying why
    NEVER = "never"    # wherever Ray puts it (the head included)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class OnWorkers:
    """Kept off the head node(s) by a label selector."""

    head_ids: tuple[str, ...]


@dataclass(frozen=True)
class HeadAllowed:
    """The head may take the actor; `reason` says why (shown by `up` when it does)."""

    reason: str


@dataclass(frozen=True)
class NoPlace:
    """`avoid_head: always` and no worker can host the actor."""

    reason: str


Placement = OnWorkers | HeadAllowed | NoPlace


def label_matches(selector_value: str, value: str | None) -> bool:
    """One value of a Ray label selector against a node's label: `v`, `!v`,
    `in(a,b)`, `!in(a,b)` (Ray's forms)."""
    negated = selector_value.startswith("!")
    body = selector_value[1:] if negated else selector_value
    if body.startswith("in(") and body.endswith(")"):
        wanted = {v.strip() for v in body[3:-1].split(",") if v.strip()}
    else:
        wanted = {body}
    found = value is not None and value in wanted
    return not found if negated else found


def _offers(node: NodeView, options: Mapping[str, Any]) -> bool:
    """The node has what the actor asks for (totals; what others use is Ray's to weigh)."""
    for name, amount in (options.get("resources") or {}).items():
        if node.resources.get(name, 0.0) < amount:
            return False
    cpus = options.get("num_cpus") or 0
    if cpus and node.resources.get("CPU", 0.0) < cpus:
        return False
    memory = options.get("memory") or 0
    if memory and node.resources.get("memory", 0.0) < memory:
        return False
    labels = {**node.labels, NODE_ID_LABEL: node.node_id}
    return all(label_matches(v, labels.get(k)) for k, v in (options.get("label_selector") or {}).items())


def _asks_for(options: Mapping[str, Any]) -> str:
    parts = [f"{k}: {v:g}" for k, v in sorted((options.get("resources") or {}).items())]
    if options.get("num_cpus"):
        parts.append(f"CPU: {options['num_cpus']:g}")
    parts += [f"label {k}={v}" for k, v in sorted((options.get("label_selector") or {}).items())]
    return ", ".join(parts) or "nothing special"


def decide(nodes: list[NodeView], options: Mapping[str, Any], avoid: AvoidHead) -> Placement:
    """Where an actor with these Ray options may run on a cluster of `nodes`."""
    if avoid is AvoidHead.NEVER:
        return HeadAllowed("placement.avoid_head is never")
    if NODE_ID_LABEL in (options.get("label_selector") or {}):
        return HeadAllowed(f"placement.labels chooses the node ({NODE_ID_LABEL})")
    heads = tuple(sorted(n.node_id for n in nodes if n.is_head))
    workers = [n for n in nodes if not n.is_head]
    if not workers:
        reason = "the cluster has no worker node"
    elif not any(_offers(w, options) for w in workers):
        reason = f"no worker node offers what the placement asks for ({_asks_for(options)})"
    else:
        return OnWorkers(heads)
    return NoPlace(reason + " (placement.avoid_head is always)") if avoid is AvoidHead.ALWAYS else HeadAllowed(reason)


def options_for(options: Mapping[str, Any], placement: Placement) -> dict[str, Any]:
    """The actor's Ray options with the placement's label selector merged in."""
    out = dict(options)
    if isinstance(placement, OnWorkers) and placement.head_ids:
        ids = placement.head_ids
        not_head = f"!{ids[0]}" if len(ids) == 1 else f"!in({','.join(ids)})"
        out["label_selector"] = {**(options.get("label_selector") or {}), NODE_ID_LABEL: not_head}
    return out
