"""One request on its way through a router (router_core.py), and through the
delivery of an outbox item (outbox_delivery.py)."""

from __future__ import annotations

from typing import Any

import msgspec

from actors.messages import Attempt
from actors.payloads import MethodSpec, Payload


class Request(msgspec.Struct, kw_only=True):
    """One request on its way through `_route`."""

    spec: MethodSpec
    payload: Payload
    key: str | None
    journal: bool                    # keyed, non-idempotent: at most once, through the providers' journals
    deadline: float                  # monotonic
    deadline_s: float
    base: dict[str, Any]
    draining: bool = False           # delivering an outbox item: the outbox itself is not a candidate
    attempts: list[Attempt] = []
    rounds: int = 0                  # times it waited for a throttled provider and planned again
    retry_rounds: int = 0            # rounds tried again after every provider failed transiently
    candidates: list[str] = []       # the plan: providers in the order they were to be tried
    skipped: dict[str, str] = {}     # provider -> why it was not tried
    deferred: dict[str, str] = {}    # provider -> why it was put last (unhealthy, cooling down)
