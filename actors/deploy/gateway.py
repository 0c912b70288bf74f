"""Creating, updating and removing the gateway's actors on a Ray cluster.

`deploy` is idempotent: an actor whose spec digest matches is left alone
(it keeps its health), a changed one is replaced, one no longer in the
config is removed. Order matters: supervisor, then providers, then routers,
so that every actor finds the ones it talks to.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray

from actors.clock import SYSTEM_CLOCK, Clock
from actors.deploy.placement import AvoidHead, NodeView, NoPlace, Placement, decide, options_for, snapshot
from actors.deploy.replicas import replica_count
from actors.errors import GatewayError
from actors.names import SUPERVISOR_NAME, is_gateway_actor, router_replica_name
from actors.provider.actor import ProviderActor
from actors.router.actor import RouterActor
from actors.specs import GatewaySpec
from actors.supervisor.actor import SupervisorActor

# Ray ends a non-detached actor once no handle to it is left, name or not:
# the driver that deployed non-detached actors keeps their handles here.
_ATTACHED: dict[str, Any] = {}

# Actors mostly wait on the network: they reserve no CPU, so ~25 of them fit
# on a 2-core machine. Ray restarts a crashed actor under the same name.
# Providers never have a call retried by Ray: a retry could send twice; the
# router falls back instead.
_COMMON: dict[str, Any] = dict(num_cpus=0, max_restarts=-1, max_concurrency=1000)
PROVIDER_OPTIONS: dict[str, Any] = dict(_COMMON, max_task_retries=0)
ROUTER_OPTIONS: dict[str, Any] = dict(_COMMON, max_task_retries=0)
SUPERVISOR_OPTIONS: dict[str, Any] = dict(_COMMON, max_task_retries=-1)
# Waiting for the name of an actor just killed to be released.
NAME_RELEASE_WAIT_S = 30
NAME_RELEASE_POLL_S = 0.2


class PlacementRefused(GatewayError):
    """`placement.avoid_head: always` and no worker node can host an actor."""


@dataclass(frozen=True)
class ActorNode:
    """Where an actor runs: its node, and whether that is the head."""

    node_id: str
    address: str = ""
    is_head: bool = False


@dataclass
class DeployReport:
    created: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    router_replicas: dict[str, int] = field(default_factory=dict)   # capability -> replicas running
    placements: dict[str, Placement] = field(default_factory=dict)   # actor -> the decision for it
    nodes: dict[str, ActorNode | None] = field(default_factory=dict)  # actor -> where it runs (None: did not say)
    cluster_nodes: int = 0

    def summary(self) -> str:
        parts = [f"{len(getattr(self, k))} {k}" for k in ("created", "replaced", "unchanged", "removed")]
        return ", ".join(parts) + f" in {self.seconds:.1f}s"

    def on_head(self) -> list[str]:
        """Actors on the head node of a multi-node cluster: they die with the head."""
        if self.cluster_nodes < 2:
            return []
        return sorted(name for name, node in self.nodes.items() if node is not None and node.is_head)


def _existing(name: str, namespace: str) -> Any | None:
    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


@dataclass(frozen=True)
class _Waiting:
    """How `deploy` reads time and waits: its clock, and a blocking pause
    (deploy runs in the driver's thread, not on an event loop)."""

    clock: Clock
    pause: Callable[[float], object]


def _create(actor_cls: Any, options: dict[str, Any], name: str, namespace: str, detached: bool, waiting: _Waiting,
            *args: Any) -> Any:
    opts = dict(options, name=name, namespace=namespace)
    if detached:
        opts["lifetime"] = "detached"
    deadline = waiting.clock.monotonic() + NAME_RELEASE_WAIT_S
    while True:
        try:
            return actor_cls.options(**opts).remote(*args)
        except ValueError:
            # The name of an actor we just killed is released asynchronously.
            if waiting.clock.monotonic() > deadline:
                raise
            waiting.pause(NAME_RELEASE_POLL_S)


def _placed(options: dict[str, Any], name: str, nodes: list[NodeView], avoid: AvoidHead,
            report: DeployReport) -> dict[str, Any]:
    placement = decide(nodes, options, avoid)
    if isinstance(placement, NoPlace):
        raise PlacementRefused(f"cannot place {name}: {placement.reason}. Add a worker node that offers it, or set "
                               "placement.avoid_head to auto")
    report.placements[name] = placement
    return options_for(options, placement)


def _ensure(actor_cls: Any, options: dict[str, Any], name: str, digest: str, namespace: str, detached: bool,
            report: DeployReport, waiting: _Waiting, *args: Any, killed: list[str] | None = None) -> Any:
    """The actor `name` with this digest: the one running, or a new one in
    place of a changed one (whose actor id goes to `killed`). An actor
    already running where its placement allows is kept (its digest holds no
    node id); one that landed on the head before is not moved here."""
    handle = _existing(name, namespace)
    if handle is not None:
        try:
            if ray.get(handle.digest.remote(), timeout=30) == digest:
                report.unchanged.append(name)
                return handle
        except Exception:  # noqa: BLE001 - an actor that cannot answer is replaced
            pass
        ray.kill(handle, no_restart=True)
        report.replaced.append(name)
        if killed is not None:
            killed.append(handle._actor_id.hex())
    else:
        report.created.append(name)
    handle = _create(actor_cls, options, name, namespace, detached, waiting, *args)
    if not detached:
        _ATTACHED[f"{namespace}/{name}"] = handle
    return handle


def deploy(spec: GatewaySpec, *, detached: bool = True, timeout_s: float = 180.0, clock: Clock = SYSTEM_CLOCK,
           pause: Callable[[float], object] = time.sleep) -> DeployReport:
    waiting = _Waiting(clock, pause)
    started = clock.monotonic()
    report = DeployReport()
    ns = spec.namespace
    nodes = snapshot(ray.nodes())
    report.cluster_nodes = len(nodes)
    avoid = AvoidHead(spec.avoid_head)

    def placed(options: dict[str, Any], name: str) -> dict[str, Any]:
        return _placed(options, name, nodes, avoid, report)

    handles = [_ensure(SupervisorActor, placed({**SUPERVISOR_OPTIONS, **spec.supervisor.ray_options}, SUPERVISOR_NAME),
                       SUPERVISOR_NAME, spec.digest, ns, detached, report, waiting, spec)]
    wanted = {SUPERVISOR_NAME}
    names = [SUPERVISOR_NAME]   # of the actors in `handles`, in order
    killed_routers: dict[str, list[str]] = {}
    first_replicas: dict[str, Any] = {}
    for cap in spec.capabilities:
        replaced_before = len(report.replaced) + len(report.created)
        for p in cap.providers:
            wanted.add(p.actor_name)
            names.append(p.actor_name)
            handles.append(_ensure(ProviderActor, placed({**PROVIDER_OPTIONS, **p.ray_options}, p.actor_name),
                                   p.actor_name, p.digest, ns, detached, report, waiting, p, ns))
        # A router holds handles to its providers: replace it when any of them was.
        # Each replica knows how many there are (status, relaying pushes): a new count replaces them.
        count = replica_count(cap.routing.replicas, len(nodes))
        report.router_replicas[cap.capability] = count
        digest = f"{cap.digest}/{count}" + ("" if len(report.replaced) + len(report.created) == replaced_before else "!")
        options = {**ROUTER_OPTIONS, **_spread(count), **cap.ray_options}
        killed = killed_routers.setdefault(cap.capability, [])
        for index in range(count):
            name = router_replica_name(cap.capability, index)
            wanted.add(name)
            names.append(name)
            handles.append(_ensure(RouterActor, placed(options, name), name, digest, ns, detached, report, waiting,
                                   cap, ns, index, count, killed=killed))
            if index == 0:
                first_replicas[cap.capability] = handles[-1]
    for name in gateway_actor_names(ns):
        if name not in wanted:
            handle = ray.get_actor(name, namespace=ns)
            ray.kill(handle, no_restart=True)
            report.removed.append(name)
            capability = name.split(":", 1)[1].split("#", 1)[0] if name.startswith("router:") else None
            if capability in killed_routers:
                killed_routers[capability].append(handle._actor_id.hex())
    ray.get([h.ready.remote() for h in handles], timeout=timeout_s)
    # Keys the routers it killed were sending stay claimed until their leases run out (deadline + 10 s)
    # and callers' resends of them wait: their claims end now (the resends settle them from the providers'
    # journals before sending anything, as after a crash).
    ray.get([first_replicas[cap].release_claims_of.remote(ids) for cap, ids in killed_routers.items() if ids],
            timeout=timeout_s)
    report.seconds = clock.monotonic() - started
    report.nodes = actor_nodes(dict(zip(names, handles, strict=True)), nodes)
    return report


def _spread(replicas: int) -> dict[str, Any]:
    """Replicas of one router on different nodes where the cluster has several
    (Ray's SPREAD: best effort, so one node still takes them all)."""
    return {"scheduling_strategy": "SPREAD"} if replicas > 1 else {}


def actor_nodes(handles: dict[str, Any], nodes: list[NodeView], timeout_s: float = 10.0) -> dict[str, ActorNode | None]:
    """Each actor's node, as the actor says (None: it did not answer, or is
    of a version without `node_id`)."""
    by_id = {n.node_id: n for n in nodes}
    out: dict[str, ActorNode | None] = {}
    refs = {name: h.node_id.remote() for name, h in handles.items()}
    for name, ref in refs.items():
        try:
            node_id = ray.get(ref, timeout=timeout_s)
        except Exception:  # noqa: BLE001 - where it runs is for information; the deploy itself succeeded
            out[name] = None
            continue
        view = by_id.get(node_id)
        out[name] = ActorNode(node_id, view.address if view else "", view.is_head if view else False)
    return out


def gateway_actor_names(namespace: str) -> list[str]:
    names = []
    for entry in ray.util.list_named_actors(all_namespaces=True):
        if entry["namespace"] == namespace and is_gateway_actor(entry["name"]):
            names.append(entry["name"])
    return sorted(names)


def teardown(namespace: str) -> list[str]:
    removed = []
    for name in gateway_actor_names(namespace):
        handle = _existing(name, namespace)
        if handle is not None:
            ray.kill(handle, no_restart=True)
            removed.append(name)
        _ATTACHED.pop(f"{namespace}/{name}", None)
    return removed
