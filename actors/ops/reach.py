"""Probing providers from every node of the Ray cluster: a reachability matrix.

A provider actor's own probe says whether the provider answers from the
node that actor runs on. To tell "the provider is down" from "node B cannot
reach it", the supervisor also runs one task per alive node, pinned there
(`NodeAffinitySchedulingStrategy(node_id, soft=False)`), that builds each
provider's adapter from its spec and calls `probe()`. These probes do not
touch health: only the provider actor's own probe does, as live traffic does.

Providers whose adapter talks to no network (`reaches_network` False: `simulated`, `noop`, `outbox`)
and those without a free health check (`has_probe` false) are left out:
probing them says nothing about a node, or would cost a real request.

A node's task receives only what its probes need (`node_targets`): the
providers whose actor that node could host (its custom resources cover the
provider's `placement.resources`; a node that could never run the actor has
no business holding its credentials), each as a `ProbeTarget` (adapter and
settings), not the whole spec with its environment secrets, hooks and store.
What comes back is redacted again by the supervisor, with every secret the
spec knows.

`probe_specs` is also what `aicmo-gateway doctor` runs on the operator's
machine, without Ray.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec

from actors.clock import SYSTEM_CLOCK, Clock
from actors.errors import ErrorKind
from actors.messages import ProbeResult
from actors.ops.recommend import NodeReach
from actors.specs import ProviderSpec

__all__ = ["NodeInfo", "NodeProbes", "ProbeTarget", "Reachability", "node_targets", "probe_specs", "probe_target",
           "probe_targets"]

# Adapters that reach no outside service: a probe from a node says nothing about it.


class NodeInfo(msgspec.Struct, frozen=True, kw_only=True):
    node_id: str
    address: str
    hostname: str = ""
    is_head: bool = False
    resources: dict[str, float] = {}     # the node's total resources, as ray.nodes() gives them

    @property
    def label(self) -> str:
        return f"{self.address} ({self.node_id[:8]}{', head' if self.is_head else ''})"


class NodeProbes(msgspec.Struct, frozen=True, kw_only=True):
    """What one node's probe task found; `error` when the task itself did not run."""

    node: NodeInfo
    results: list[ProbeResult] = []
    error: str | None = None
    elapsed_ms: float = 0.0


class Reachability(msgspec.Struct, frozen=True, kw_only=True):
    """Each probed provider from each node, and where each provider's actor runs."""

    generated_at: float
    nodes: list[NodeProbes]
    actor_nodes: dict[str, str] = {}     # "capability/provider" -> node_id of its actor

    def reach_of(self, capability: str, provider: str) -> list[NodeReach]:
        out = []
        where = self.actor_nodes.get(f"{capability}/{provider}")
        for n in self.nodes:
            if n.error is not None:
                continue  # the node's task did not run: no evidence either way
            for r in n.results:
                if r.capability == capability and r.provider == provider:
                    out.append(NodeReach(node=n.node.label, node_id=n.node.node_id, ok=r.ok, error_kind=r.error_kind,
                                         error=r.error, hosts_actor=where == n.node.node_id))
        return out

    def matrix(self) -> dict[str, dict[str, str]]:
        """`capability/provider` -> node label -> "ok" or the error kind (for display)."""
        out: dict[str, dict[str, str]] = {}
        for n in self.nodes:
            for r in n.results:
                out.setdefault(f"{r.capability}/{r.provider}", {})[n.node.label] = "ok" if r.ok else str(r.error_kind)
        return out


class ProbeTarget(msgspec.Struct, frozen=True, kw_only=True):
    """What a probe needs to build one provider's adapter, and nothing more."""

    name: str
    capability: str
    adapter: str
    settings: dict[str, Any]
    delivers: bool = True


def probe_targets(providers: Sequence[ProviderSpec]) -> list[ProviderSpec]:
    return [p for p in providers if p.has_probe and p.delivers and p.reaches_network]


def probe_target(spec: ProviderSpec) -> ProbeTarget:
    return ProbeTarget(name=spec.name, capability=spec.capability, adapter=spec.adapter, settings=spec.settings,
                       delivers=spec.delivers)


def can_host(node: NodeInfo, spec: ProviderSpec) -> bool:
    """Whether Ray could place this provider's actor on `node`: its custom resources are there."""
    needed = spec.ray_options.get("resources") or {}
    return all(node.resources.get(name, 0.0) >= amount for name, amount in needed.items())


def node_targets(nodes: Sequence[NodeInfo], providers: Sequence[ProviderSpec]) -> dict[str, list[ProbeTarget]]:
    """node_id -> what that node's probe task receives (nodes with nothing to probe are left out)."""
    out: dict[str, list[ProbeTarget]] = {}
    for node in nodes:
        mine = [probe_target(p) for p in probe_targets(providers) if can_host(node, p)]
        if mine:
            out[node.node_id] = mine
    return out


def _build(target: ProbeTarget) -> Any:
    from actors.adapters.registry import get_adapter_class

    cls = get_adapter_class(target.adapter)
    return cls(cls.Settings.model_validate(target.settings), capability=target.capability, provider=target.name)


async def probe_specs(providers: Sequence[ProviderSpec | ProbeTarget], timeout_s: float,
                      clock: Clock = SYSTEM_CLOCK) -> list[ProbeResult]:
    """Build each provider's adapter here and run its probe, all at once,
    each within `timeout_s` (latencies on `clock`). Errors are sorted into
    kinds and redacted."""
    from actors.redaction import Redactor
    from actors.adapters.errormap import classify

    async def one(given: ProviderSpec | ProbeTarget) -> ProbeResult:
        started = clock.monotonic()
        adapter = None
        redact = Redactor(given.secret_values() if isinstance(given, ProviderSpec) else [])
        spec = given if isinstance(given, ProbeTarget) else probe_target(given)
        try:
            adapter = _build(spec)
            redact = redact.extended(adapter.settings.secret_values())
            await asyncio.wait_for(adapter.probe(), timeout_s)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a kind
            kind, message, _, _ = classify(exc)
            if adapter is None:
                kind, message = ErrorKind.CRASHED, f"cannot build the {spec.adapter} adapter here: {exc}"
            return ProbeResult(provider=spec.name, capability=spec.capability, ok=False, error_kind=kind,
                               error=redact(message), latency_ms=(clock.monotonic() - started) * 1000,
                               delivers=spec.delivers)
        finally:
            if adapter is not None:
                try:
                    await adapter.close()
                except Exception:  # noqa: BLE001
                    pass
        return ProbeResult(provider=spec.name, capability=spec.capability, ok=True,
                           latency_ms=(clock.monotonic() - started) * 1000, delivers=spec.delivers)

    return list(await asyncio.gather(*(one(p) for p in providers)))


def _probe_here(providers: list[ProbeTarget], timeout_s: float) -> list[ProbeResult]:
    return asyncio.run(probe_specs(providers, timeout_s))


_remote_probe: Any = None


def alive_nodes() -> list[NodeInfo]:
    import ray

    out = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        resources = {k: float(v) for k, v in (n.get("Resources") or {}).items()}
        out.append(NodeInfo(node_id=n["NodeID"], address=n.get("NodeManagerAddress", "?"),
                            hostname=n.get("NodeManagerHostname", ""),
                            is_head="node:__internal_head__" in resources, resources=resources))
    return sorted(out, key=lambda x: (not x.is_head, x.address, x.node_id))


async def probe_from_every_node(providers: Sequence[ProviderSpec], probe_timeout_s: float, task_timeout_s: float,
                                nodes: list[NodeInfo] | None = None, clock: Clock = SYSTEM_CLOCK,
                                here: str | None = None) -> list[NodeProbes]:
    """One pinned task per alive node, all at once (elapsed times on `clock`);
    the caller's own node (`here`) is probed from the caller's process, in a
    thread: a task there would start a worker process every check (about a
    second of CPU and 95 MB on a node already running the gateway, which a
    ten-minute soak on one machine saw as a latency spike every check)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    global _remote_probe
    if _remote_probe is None:
        _remote_probe = ray.remote(num_cpus=0, max_retries=0)(_probe_here)
    from actors.redaction import Redactor

    nodes = alive_nodes() if nodes is None else nodes
    per_node = node_targets(nodes, providers)
    if not per_node:
        return []
    redact = Redactor([s for p in providers for s in p.secret_values()])

    async def on(node: NodeInfo) -> NodeProbes:
        started = clock.monotonic()
        if node.node_id == here:
            results = await asyncio.to_thread(_probe_here, per_node[node.node_id], probe_timeout_s)
        else:
            ref = _remote_probe.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node.node_id, soft=False),
                name=f"aicmo-probe@{node.node_id[:8]}").remote(per_node[node.node_id], probe_timeout_s)
            try:
                results = await asyncio.wait_for(ref, task_timeout_s)
            except asyncio.TimeoutError:
                ray.cancel(ref, force=True)
                return NodeProbes(node=node, error=f"the probe task did not finish within {task_timeout_s:g}s "
                                                   f"(supervisor.node_probe_timeout_s)",
                                  elapsed_ms=(clock.monotonic() - started) * 1000)
            except Exception as exc:  # noqa: BLE001 - a node that died mid-check, say
                return NodeProbes(node=node, error=f"the probe task failed: {type(exc).__name__}: {str(exc)[:200]}",
                                  elapsed_ms=(clock.monotonic() - started) * 1000)
        # The node redacted with what it was given; the spec knows every secret.
        results = [msgspec.structs.replace(r, error=redact(r.error)) for r in results]
        return NodeProbes(node=node, results=results, elapsed_ms=(clock.monotonic() - started) * 1000)

    return list(await asyncio.gather(*(on(n) for n in nodes if n.node_id in per_node)))
