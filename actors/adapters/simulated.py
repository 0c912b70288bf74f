"""A provider that behaves like a real one under the router, for demos, load
tests and fault injection: latency with jitter, errors of a chosen kind at a
chosen rate, real concurrency, and a ledger of every delivery.

Deterministic for a seed (given the same order of calls). The ledger is a
JSON-lines file; several provider actors may append to the same one, and
each line is written with one `write` on an O_APPEND descriptor so lines
never interleave.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from collections import OrderedDict
from typing import Any, Literal

from pydantic import Field

from actors.adapters.base import Adapter, AdapterSettings
from actors.errors import ERROR_BY_KIND, ErrorKind
from actors.messages import CallContext
from actors.payloads import Payload


class SimulatedSettings(AdapterSettings):
    failure_rate: float = Field(0.0, ge=0, le=1)
    latency_ms: float = Field(5.0, ge=0)
    latency_jitter_ms: float = Field(0.0, ge=0)
    error: Literal["transient", "rate_limited", "auth", "timeout"] = "transient"
    seed: int | None = None
    ledger: str | None = None
    retry_after_s: float | None = Field(None, ge=0, description="what a rate_limited error says")
    # Where in the attempt a failure strikes: before the provider took the
    # request, or after it delivered (the outcome the caller cannot know).
    fail_after_delivery: bool = False
    tail_rate: float = Field(0.0, ge=0, le=1, description="share of calls in a slow tail")
    tail_factor: float = Field(20.0, ge=1, description="how many times its latency a tail call takes")


def _value(method: str, payload: Any, ident: str) -> dict[str, Any]:
    if method == "send_email":
        return {"message_id": f"<{ident}@simulated.invalid>"}
    if method == "publish_post":
        return {"post_id": ident, "url": f"https://simulated.invalid/posts/{ident}"}
    if method == "upsert_contact":
        return {"record_id": f"rec{ident[:14]}", "created": True}
    if method == "enrich_person":
        return {"found": True, "person": {"email": getattr(payload, "email", None), "title": "Simulated"}}
    if method == "verify_email":
        return {"email": payload.email, "status": "valid"}
    if method == "fetch_replies":
        return {"replies": []}
    if method == "dispatch":
        return {"delivery_id": ident, "status_code": 200}
    return {"id": ident}


class SimulatedAdapter(Adapter):
    name = "simulated"
    Settings = SimulatedSettings
    reaches_network = False

    def __init__(self, settings: SimulatedSettings, **kw: Any):
        super().__init__(settings, **kw)
        self._random = random.Random(settings.seed)
        # The tail has a stream of its own, so it does not shift the failures' draws.
        self._tail_random = random.Random(None if settings.seed is None else settings.seed + 7919)
        self._sleep = kw.get("transport") or asyncio.sleep  # the "transport" of a simulation is its clock
        # What this process tried and delivered, by idempotency key, for reconcile().
        self._tried: set[str] = set()
        self._delivered: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def reconfigure(self, **changes: Any) -> SimulatedSettings:
        """Fault injection at run time (demo, tests): change any setting."""
        self.settings = self.Settings.model_validate({**self.settings.model_dump(), **changes})
        if "seed" in changes:
            self._random = random.Random(self.settings.seed)
        return self.settings

    async def call(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        s = self.settings
        if ctx.dry_run:
            return await self.dry_run(method, payload, ctx)
        latency = s.latency_ms + (self._random.uniform(-1, 1) * s.latency_jitter_ms if s.latency_jitter_ms else 0.0)
        if s.tail_rate and self._tail_random.random() < s.tail_rate:
            latency *= s.tail_factor
        fails = s.failure_rate > 0 and self._random.random() < s.failure_rate
        key = ctx.idempotency_key
        if key:
            self._tried.add(key)
        if fails and s.error == "timeout" and not s.fail_after_delivery:
            await self._sleep(ctx.timeout_s + 1.0)  # outlive the attempt's timeout
        if latency > 0:
            await self._sleep(latency / 1000)
        if fails and not s.fail_after_delivery:
            self._raise()
        ident = uuid.uuid4().hex
        self._append_ledger(method, ctx, ident)
        value = _value(method, payload, ident)
        if key:
            self._delivered[key] = value
            while len(self._delivered) > 100_000:
                self._delivered.popitem(last=False)
        if fails:
            if s.error == "timeout":
                await self._sleep(ctx.timeout_s + 1.0)  # delivered, and then no answer
            self._raise(maybe_delivered=True)
        return value

    def _raise(self, maybe_delivered: bool = False) -> None:
        kind = ErrorKind(self.settings.error)
        error = ERROR_BY_KIND[kind]
        message = f"simulated {kind} failure at {self.provider}"
        raise error(message, retry_after_s=self.settings.retry_after_s if kind is ErrorKind.RATE_LIMITED else None,
                    maybe_delivered=maybe_delivered)

    async def reconcile(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any] | None:
        """The simulation knows what it delivered: from memory in this
        process, from the ledger across restarts."""
        key = ctx.idempotency_key
        if key in self._delivered:
            return self._delivered[key]
        if self.settings.ledger:
            try:
                with open(self.settings.ledger) as f:
                    for line in f:
                        entry = json.loads(line)
                        if entry.get("idempotency_key") == key and entry.get("provider") == self.provider:
                            return _value(method, payload, entry["delivery_id"])
            except FileNotFoundError:
                pass
            return None
        if key in self._tried:
            return None  # this process tried it and never got as far as delivering
        raise NotImplementedError("a simulated provider without a ledger forgets across restarts")

    def _append_ledger(self, method: str, ctx: CallContext, ident: str) -> None:
        if not self.settings.ledger:
            return
        line = json.dumps(
            {
                "at": time.time(),
                "request_id": ctx.request_id,
                "idempotency_key": ctx.idempotency_key,
                "method": method,
                "provider": self.provider,
                "capability": self.capability,
                "delivery_id": ident,
            }
        )
        fd = os.open(self.settings.ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    async def probe(self) -> None:
        # A slow provider's health check is as slow as its calls (outlier ejection compares probes).
        if self.settings.latency_ms > 0:
            await self._sleep(self.settings.latency_ms / 1000)
        # A flaky provider's health check is as flaky as its traffic.
        if self.settings.failure_rate and self._random.random() < self.settings.failure_rate:
            self._raise()
