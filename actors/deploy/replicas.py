"""How many router replicas a capability gets, decided at `up` (pure).

`policy.routing.replicas: auto` means availability where it can be had: on a
cluster of several nodes two replicas, so that a router's death (or its
node's) costs callers no stall while Ray restarts it; on one machine one,
since a second replica there guards against little but a crash of that one
process and costs a worker process (~95 MB) per capability.
"""

from __future__ import annotations

from actors.names import MAX_ROUTER_REPLICAS

__all__ = ["AUTO_REPLICAS_MULTI_NODE", "replica_count"]

AUTO_REPLICAS_MULTI_NODE = 2


def replica_count(setting: int | str, alive_nodes: int) -> int:
    """The replicas to run: a configured count as it is, `auto` by the
    cluster's size (alive nodes, the head included)."""
    if isinstance(setting, int):
        return max(1, min(setting, MAX_ROUTER_REPLICAS))
    if setting != "auto":
        raise ValueError(f"policy.routing.replicas: auto or a count, not {setting!r}")
    return AUTO_REPLICAS_MULTI_NODE if alive_nodes >= 2 else 1
