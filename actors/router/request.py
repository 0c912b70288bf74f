"""One request on its way through a router (core.py), and through the
delivery of an outbox item (outbox_delivery.py). The check of the options
`invoke` takes is `payloads.check_options`."""

from __future__ import annotations

from typing import Any

import msgspec

from actors.messages import Attempt, CallContext, SkipInfo
from actors.payloads import MethodSpec, Payload
from actors.policy.skips import Skip


class Request(msgspec.Struct, kw_only=True):
    """One request on its way through `route`."""

    spec: MethodSpec
    payload: Payload
    key: str | None
    journal: bool                    # keyed, non-idempotent: at most once, through the providers' journals
    deadline: float                  # monotonic, on the router's clock
    deadline_s: float
    base: dict[str, Any]
    draining: bool = False           # delivering an outbox item: the outbox itself is not a candidate
    attempts: list[Attempt] = []
    rounds: int = 0                  # times it waited for a throttled provider and planned again
    retry_rounds: int = 0            # rounds tried again after every provider failed transiently
    candidates: list[str] = []       # the plan: providers in the order they were to be tried
    skipped: dict[str, Skip] = {}    # provider -> why it was not tried
    trace: Any = None                # its root span (actors/telemetry/spans.py RequestSpan); None: not traced
    excluded: frozenset[str] = frozenset()  # never tried (a drop fallback's re-send: the provider that dropped it)

    def context(self, timeout_s: float, pace_s: float | None = None, traceparent: str | None = None) -> CallContext:
        """What the provider actor is told of one attempt (or question) besides the payload."""
        return CallContext(request_id=self.base["request_id"], method=self.spec.name, idempotency_key=self.key,
                           dry_run=self.base["dry_run"], timeout_s=timeout_s, journal=self.journal, pace_s=pace_s,
                           traceparent=traceparent)

    def skip(self, name: str, skip: Skip) -> None:
        """`name` is not tried, for `skip`'s reason (an event on its span, when traced)."""
        self.skipped[name] = skip
        if self.trace is not None:
            self.trace.skipped(name, skip.reason, skip.detail)

    def skipped_details(self) -> dict[str, str]:
        """provider -> why it was not tried, in words (the Decision's `skipped`)."""
        return {name: skip.detail for name, skip in self.skipped.items()}

    def skips(self) -> list[SkipInfo]:
        """The providers it did not try, each with the typed reason and the
        words (InvokeResult's and the Decision's `skips`)."""
        return [SkipInfo(provider=name, reason=s.reason, detail=s.detail) for name, s in self.skipped.items()]

