"""One request on its way through a router (router_core.py), and through the
delivery of an outbox item (outbox_delivery.py); and the check of the
options `invoke` takes."""

from __future__ import annotations

from typing import Any

import msgspec

from actors.messages import Attempt, CallContext
from actors.payloads import MethodSpec, Payload, PayloadError
from actors.policy.skips import Skip

MAX_KEY_LENGTH = 256


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

    def context(self, timeout_s: float) -> CallContext:
        """What the provider actor is told of one attempt (or question) besides the payload."""
        return CallContext(request_id=self.base["request_id"], method=self.spec.name, idempotency_key=self.key,
                           dry_run=self.base["dry_run"], timeout_s=timeout_s, journal=self.journal)

    def skipped_details(self) -> dict[str, str]:
        """provider -> why it was not tried, in words (the Decision's `skipped`)."""
        return {name: skip.detail for name, skip in self.skipped.items()}


def check_options(idempotency_key: Any, deadline_s: Any) -> None:
    """The options of `invoke`, refused with a PayloadError that says why."""
    if idempotency_key is not None:
        if not (isinstance(idempotency_key, str) and idempotency_key.strip()):
            raise PayloadError("idempotency_key must be a non-empty string")
        if len(idempotency_key) > MAX_KEY_LENGTH:
            raise PayloadError(f"idempotency_key is {len(idempotency_key)} characters long; at most {MAX_KEY_LENGTH}")
        try:
            idempotency_key.encode()
        except UnicodeEncodeError:
            raise PayloadError("idempotency_key is not valid Unicode (a lone surrogate)") from None
    if deadline_s is not None and (isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float))
                                   or not 0 < deadline_s < float("inf")):
        raise PayloadError(f"deadline_s must be a positive number of seconds, got {str(deadline_s)[:40]!r}")
