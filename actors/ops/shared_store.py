"""Does every node that may host a gateway actor see the same state store?

Every actor opens `state.url` on its own node. A directory there is a
different directory on every machine that does not share the disk: queued
requests land in a file the supervisor never reads, and a router settling
an unknown outcome reads a journal the provider never wrote. Nothing fails
loudly; the guarantees are simply gone. So `up`, `doctor` and the periodic
self-check find out:

1. which alive nodes may host a gateway actor, from the placement's Ray
   resources (a node lacking a custom resource an actor needs, or its CPUs
   or memory, cannot host it: `hosting_nodes`, pure);
2. a task pinned to the first of them writes a marker through the store;
3. a task pinned to each of the others looks for it through the store (for
   SQLite, first whether the file exists there at all, so the check leaves
   no stray file behind).

One node, or every gateway actor pinned to one node, needs no check.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from actors.clock import SYSTEM_CLOCK, Clock
from actors.messages import Recommendation
from actors.ops.reach import NodeInfo
from actors.specs import GatewaySpec, StateSpec

__all__ = ["NodeView", "SharedStoreReport", "check_shared_store", "hosting_nodes", "may_host"]


class NodeView(msgspec.Struct, frozen=True, kw_only=True):
    node: NodeInfo
    sees: bool
    detail: str = ""


class SharedStoreReport(msgspec.Struct, frozen=True, kw_only=True):
    url: str                         # state.url without a password
    nodes: list[NodeView] = []       # every node that may host an actor, the writer first
    pinned: bool = False             # at most one node may host the gateway: nothing to share
    error: str | None = None         # the check itself could not run (no writer, the marker not written)

    @property
    def shared(self) -> bool:
        return self.pinned or (self.error is None and all(v.sees for v in self.nodes))

    def explain(self) -> str:
        if self.shared:
            where = "one node hosts the gateway" if self.pinned else f"{len(self.nodes)} nodes see it"
            return f"state.url {self.url}: shared ({where})"
        if self.error is not None:
            return f"state.url {self.url}: the check could not run: {self.error}"
        writer = self.nodes[0]
        blind = [v for v in self.nodes if not v.sees]
        lines = [f"state.url {self.url} is not shared by the nodes that may host the gateway's actors: a marker "
                 f"written through node {writer.node.label} is not seen from "
                 + ", ".join(f"node {v.node.label} ({v.detail})" for v in blind) + "."]
        lines.append("Every actor must reach the same store, or queued requests and delivery journals split between "
                     "machines. Fix: a PostgreSQL state.url every node reaches (postgresql://user@host:port/db), a "
                     "directory every node mounts, or placement resources that pin every gateway actor to one node.")
        return "\n".join(lines)


def recommendations(report: SharedStoreReport) -> list[Recommendation]:
    if report.shared:
        return []
    problem, _, fix = report.explain().partition("\n")
    return [Recommendation(severity="critical", capability="*", provider=None,
                           problem="the nodes that may host the gateway's actors do not share its state store",
                           evidence=problem, fix=fix or "see `aicmo-gateway doctor`")]


def may_host(resources: dict[str, float], needs: dict[str, Any]) -> bool:
    """Whether a node with these total `resources` can run an actor created
    with these Ray options (num_cpus, memory, resources)."""
    if needs.get("num_cpus", 0) > resources.get("CPU", 0):
        return False
    if needs.get("memory") and needs["memory"] > resources.get("memory", 0):
        return False
    return all(resources.get(name, 0.0) >= amount for name, amount in (needs.get("resources") or {}).items())


def _actor_options(spec: GatewaySpec) -> Iterable[dict[str, Any]]:
    yield spec.supervisor.ray_options
    for cap in spec.capabilities:
        yield cap.ray_options
        for p in cap.providers:
            yield p.ray_options


def hosting_nodes(spec: GatewaySpec, nodes: Sequence[tuple[NodeInfo, dict[str, float]]]) -> list[NodeInfo]:
    """The nodes that may host at least one of the gateway's actors, in the
    given order."""
    options = list(_actor_options(spec))
    return [node for node, resources in nodes if any(may_host(resources, o) for o in options)]


def _alive_with_resources() -> list[tuple[NodeInfo, dict[str, float]]]:
    import ray

    out = []
    for n in ray.nodes():
        if n.get("Alive"):
            resources = dict(n.get("Resources") or {})
            out.append((NodeInfo(node_id=n["NodeID"], address=n.get("NodeManagerAddress", "?"),
                                 hostname=n.get("NodeManagerHostname", ""),
                                 is_head="node:__internal_head__" in resources), resources))
    return sorted(out, key=lambda x: (not x[0].is_head, x[0].address, x[0].node_id))


# --- the tasks, run on the nodes ------------------------------------------------------
def _write_marker(state: StateSpec, token: str, node: str) -> str | None:
    """Runs on the writer node: the error, or None."""
    from actors.specs import open_spec_store

    async def write() -> None:
        store = open_spec_store(state)
        try:
            await store.put_marker(token, node)
        finally:
            await store.close()

    try:
        asyncio.run(write())
    except Exception as exc:  # noqa: BLE001 - reported, with the store's own words
        return f"{type(exc).__name__}: {exc}"
    return None


def _look_for_marker(state: StateSpec, token: str) -> tuple[bool, str]:
    """Runs on every other node: (seen, why not)."""
    from actors.durable import parse_state_url
    from actors.specs import open_spec_store

    location = parse_state_url(state.url)
    if location.kind == "sqlite" and location.path not in (None, ":memory:"):
        path = Path(location.path).expanduser()
        if not path.exists():
            return False, f"no {path} on this node"

    async def look() -> str | None:
        store = open_spec_store(state)
        try:
            return await store.find_marker(token)
        finally:
            await store.close()

    try:
        found = asyncio.run(look())
    except Exception as exc:  # noqa: BLE001
        return False, f"cannot open the store here: {type(exc).__name__}: {exc}"
    return (True, "") if found is not None else (False, "a different store: the marker is not in it")


_remote: dict[str, Any] = {}


def _task(fn: Any) -> Any:
    import ray

    if fn.__name__ not in _remote:
        _remote[fn.__name__] = ray.remote(num_cpus=0, max_retries=0)(fn)
    return _remote[fn.__name__]


async def check_shared_store(spec: GatewaySpec, timeout_s: float = 60.0,
                             nodes: Sequence[tuple[NodeInfo, dict[str, float]]] | None = None,
                             clock: Clock = SYSTEM_CLOCK) -> SharedStoreReport:
    """Needs a connected Ray driver (or runs inside an actor). `timeout_s` is
    the whole check's, measured on `clock`."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from actors.durable import without_password

    url = without_password(spec.state.url)
    hosts = hosting_nodes(spec, nodes if nodes is not None else _alive_with_resources())
    if len(hosts) <= 1:
        return SharedStoreReport(url=url, nodes=[NodeView(node=n, sees=True) for n in hosts], pinned=True)

    def on(node: NodeInfo) -> dict[str, Any]:
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node.node_id, soft=False),
                "name": f"aicmo-store-check@{node.node_id[:8]}"}

    token = f"split-check-{uuid.uuid4().hex}"
    writer, others = hosts[0], hosts[1:]
    started = clock.monotonic()
    try:
        error = await asyncio.wait_for(_task(_write_marker).options(**on(writer)).remote(spec.state, token,
                                                                                          writer.node_id), timeout_s)
    except Exception as exc:  # noqa: BLE001 - a node gone, a timeout
        error = f"the task on {writer.label} did not finish: {type(exc).__name__}: {str(exc)[:200]}"
    if error is not None:
        return SharedStoreReport(url=url, nodes=[NodeView(node=writer, sees=False, detail=error)],
                                 error=f"the marker could not be written through node {writer.label}: {error}")

    async def look(node: NodeInfo) -> NodeView:
        left = max(1.0, timeout_s - (clock.monotonic() - started))
        try:
            sees, detail = await asyncio.wait_for(
                _task(_look_for_marker).options(**on(node)).remote(spec.state, token), left)
        except Exception as exc:  # noqa: BLE001
            sees, detail = False, f"the check's task did not finish there: {type(exc).__name__}: {str(exc)[:200]}"
        return NodeView(node=node, sees=sees, detail=detail)

    views = await asyncio.gather(*(look(n) for n in others))
    return SharedStoreReport(url=url, nodes=[NodeView(node=writer, sees=True), *views])
