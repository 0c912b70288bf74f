"""The provider actor: a thin Ray shell around ProviderCore (core.py).

It pushes its provider's health to its router and the supervisor when the
state changes (off the request's path), tells its router when Ray restarted
it, and runs the operations side (metrics, hooks on health changes).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import ray

from actors.durable import StoreHealth
from actors.messages import CallContext, CallReply, ProbeResult, ProviderStatus, Resolution
from actors.payloads import Payload
from actors.policy.chaos.faults import Fault
from actors.policy.health import HealthSnapshot
from actors.provider.core import ProviderCore
from actors.specs import SUPERVISOR_NAME, ProviderSpec, router_name

log = logging.getLogger("aicmo.provider")


def _reconstructed() -> bool:
    """Whether Ray restarted this actor (the property reads a deprecated
    one of its own on the way: its warning would go to every worker's log)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bool(ray.get_runtime_context().was_current_actor_reconstructed)


@ray.remote
class ProviderActor:
    def __init__(self, spec: ProviderSpec, namespace: str):
        from actors.ops.observers import ProviderOps

        self._core = ProviderCore(spec)
        self._core.on_change = self._push_change
        self._namespace = namespace
        self._peers: dict[str, Any] = {}
        self._announced = False
        self._ops = ProviderOps(spec, self._core.status)
        self._core.faults.on_applied = self._ops.chaos_applied
        self._core.spending.status_of, self._core.spending.on_flip = self._core.status, self._push_quota
        self._core.spending.on_spend = self._ops.spent
        try:  # start the ops loop (gauges, audit flushes) without waiting for traffic, also after a restart
            ray.get_runtime_context().current_actor.ready.remote()
        except Exception:  # noqa: BLE001
            pass

    def _peer(self, name: str) -> Any:
        """The supervisor's or the router's handle, looked up once: a lookup
        is a blocking call to Ray's GCS, made in the middle of a request (a
        health change), that holds up every call in flight on this actor."""
        handle = self._peers.get(name)
        if handle is None:
            handle = self._peers[name] = ray.get_actor(name, namespace=self._namespace)
        return handle

    def _push_change(self, status: ProviderStatus) -> None:
        # Fire and forget: a slow or restarting supervisor must never hold up a request.
        self._ops.health_changed(status)  # gauges and on_health_change hooks: enqueued only
        for name in (SUPERVISOR_NAME, router_name(status.capability)):
            self._tell(name, status, resend=True)

    def _push_quota(self, status: ProviderStatus) -> None:
        """Its quota or balance was spent, or is back: the router plans with it
        (actors/router/quotas.py); fire and forget, like health."""
        for name in (SUPERVISOR_NAME, router_name(status.capability)):
            try:
                peer = self._peer(name)
                (peer.report if name == SUPERVISOR_NAME else peer.quota_changed).remote(status)
            except Exception:  # noqa: BLE001 - not deployed yet, or gone: replies and status tell it later
                self._peers.pop(name, None)

    def _tell(self, name: str, status: ProviderStatus, resend: bool) -> None:
        try:
            peer = self._peer(name)
            if name == SUPERVISOR_NAME:
                ref = peer.report.remote(status)
            else:
                ref = peer.health_changed.remote(status.name, self._core.health)
        except Exception:  # noqa: BLE001 - not deployed yet, or gone
            self._peers.pop(name, None)
            return
        if not resend:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not in a request: the supervisor's sampling catches up
            return

        # A redeploy may have replaced the peer with a new actor under the same
        # name: if the call fails, look the name up again and send once more.
        def sent(done: Any) -> None:
            if done.exception() is not None:
                loop.call_soon_threadsafe(self._tell_again, name, status)

        ref.future().add_done_callback(sent)

    def _tell_again(self, name: str, status: ProviderStatus) -> None:
        self._peers.pop(name, None)
        self._tell(name, status, resend=False)

    async def call(self, method: str, payload: Payload, ctx: CallContext) -> CallReply:
        reply = await self._core.call(method, payload, ctx)
        self._ops.observe_call(reply, ctx.dry_run)
        return reply

    async def call_many(self, calls: list[tuple[str, Payload, CallContext]]) -> list[CallReply]:
        """A router's batch (actors/router/coalesce.py): its keyed sends checked
        and journaled together, all run concurrently, answered in order."""
        replies = await self._core.call_many(calls)
        for (_, _, ctx), reply in zip(calls, replies, strict=True):
            self._ops.observe_call(reply, ctx.dry_run)
        return replies

    async def resolve(self, method: str, payload: Payload, ctx: CallContext) -> Resolution:
        return await self._core.resolve(method, payload, ctx)

    async def probe(self, timeout_s: float = 5.0) -> ProbeResult:
        return await self._core.probe(timeout_s)

    def status(self) -> ProviderStatus:
        return self._core.status()

    def health(self) -> HealthSnapshot:
        return self._core.health

    def digest(self) -> str:
        return self._core.spec.digest

    def store_health(self) -> StoreHealth:
        """The state store as this provider has seen it; `unjournaled` is how
        many outcomes wait to be written because it did not answer."""
        return msgspec.structs.replace(self._core.store().health(), unjournaled=self._core.outcomes.backlog)

    async def ready(self) -> str:
        self._ops.ensure_started()
        self._core.spending.start(eager=False)  # loads this period's spend from the store, then flushes every second
        if not self._announced:
            self._announced = True
            if _reconstructed():
                asyncio.ensure_future(self._back())
        return self._core.spec.actor_name

    async def _back(self) -> None:
        """Ray restarted this actor: its router tries it again now, not after
        its unreachable back-off, and hands back the health it had."""
        spec = self._core.spec
        try:
            health = await self._peer(router_name(spec.capability)).provider_back.remote(spec.name)
        except Exception:  # noqa: BLE001 - the router not there yet: it learns from the first reply
            log.warning("%s: could not tell the router it is back", spec.actor_name, exc_info=True)
            return
        if health is not None and self._core.resume(health):
            log.warning("%s: restarted; resuming from the health the router had (%s)", spec.actor_name,
                        health.state)

    def node_id(self) -> str:
        """The Ray node this actor runs on: where its traffic to the provider goes from."""
        return ray.get_runtime_context().get_node_id()

    async def ops_report(self) -> dict[str, Any]:
        """Its on_health_change hooks: calls, failures, load errors."""
        return self._ops.report()

    def set_fault(self, fault: Fault | None) -> Fault | None:
        """Sets the live fault (`chaos inject`, through the supervisor), or clears
        it with None; returns the active one it replaced. Memory only: a
        restarted actor has none."""
        self._ops.ensure_started()  # its gauge follows on the ops round
        return self._core.faults.set(fault)

    def fault(self) -> Fault | None:
        """The live fault, while it lasts."""
        return self._core.faults.current()

    def inject_fault(self, **changes: Any) -> dict[str, Any]:
        """Change a simulated provider's behaviour at run time (demo and fault tests)."""
        reconfigure = getattr(self._core.adapter, "reconfigure", None)
        if reconfigure is None:
            raise TypeError(f"{self._core.spec.adapter} adapter takes no injected faults; only `simulated` does")
        return reconfigure(**changes).model_dump()
