"""The supervisor's side of live fault injection (`aicmo-gateway chaos
inject|list|clear`): no store, the fault lives in the provider actor's
memory (actors/provider/faults.py).

    inject: rebuild on the supervisor's clock, validate again (config, provider) -> provider.set_fault(fault)
            -> router.chaos_event(FaultInjected) (the audit log)
    clear:  provider.set_fault(None) for each provider named
            -> router.chaos_event(FaultCleared) for each fault that was active
    list:   provider.fault() of every real provider, gathered

Actors are reached through `actor(name)` (the supervisor passes a lookup
by name in its namespace), so this module holds no Ray code of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from actors.names import provider_name, router_name
from actors.policy.chaos.faults import Fault, FaultCleared, FaultInjected, rebuilt
from actors.specs import GatewaySpec

__all__ = ["clear", "faults", "inject", "known_providers"]

Lookup = Callable[[str], Any]


def known_providers(spec: GatewaySpec) -> dict[str, list[str]]:
    """Each capability's real providers: those a fault may be set on (not the outbox)."""
    return {c.capability: [p.name for p in c.providers if not p.last_resort] for c in spec.capabilities}


async def inject(spec: GatewaySpec, fault: Fault, actor: Lookup, now: float) -> FaultInjected:
    """Sets `fault` on its provider actor and has the router audit it.
    Rebuilt and validated again here (InvalidFault): the config that
    forbids it is the deployed one, whatever the client read, and its times
    are this clock's (`now`), whatever the client stamped."""
    fault = rebuilt(fault, now=now, policy=spec.chaos, known=known_providers(spec))
    replaced = await actor(provider_name(fault.capability, fault.provider)).set_fault.remote(fault)
    event = FaultInjected(fault=fault, replaced=replaced)
    await actor(router_name(fault.capability)).chaos_event.remote(event)
    return event


async def clear(spec: GatewaySpec, now: float, by: str, actor: Lookup, capability: str | None = None,
                provider: str | None = None) -> list[FaultCleared]:
    """Clears the faults of one provider, of one capability, or all; the
    events of those that were active, each audited by its router."""
    targets = [(cap, name) for cap, names in known_providers(spec).items() for name in names
               if capability in (None, cap) and provider in (None, name)]
    olds = await asyncio.gather(*(actor(provider_name(cap, name)).set_fault.remote(None) for cap, name in targets))
    events = [FaultCleared(fault=old, at=now, by=by) for old in olds if old is not None]
    await asyncio.gather(*(actor(router_name(e.fault.capability)).chaos_event.remote(e) for e in events))
    return events


async def faults(spec: GatewaySpec, actor: Lookup, timeout_s: float = 10.0) -> list[Fault]:
    """The active faults, as the provider actors hold them (one that does
    not answer has none to show)."""
    async def one(cap: str, name: str) -> Fault | None:
        try:
            return await asyncio.wait_for(actor(provider_name(cap, name)).fault.remote(), timeout_s)
        except Exception:  # noqa: BLE001 - not answering: restarting, or gone (a restart ends its fault)
            return None

    found = await asyncio.gather(*(one(cap, n) for cap, names in known_providers(spec).items() for n in names))
    return sorted((f for f in found if f is not None), key=lambda f: f.key)
