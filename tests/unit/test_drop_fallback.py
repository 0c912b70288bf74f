"""The drop fallback (opt-in): a message the provider dropped for its own
reasons is sent again once, through another provider, with the same
Message-ID; a recipient's bounce, a deferral, or a drop for the
recipient's sake is not. In-process providers (the Harness), a real
SQLite store, no Ray."""

from __future__ import annotations

import asyncio

import msgspec

from actors.durable.store import StoredEvent
from actors.events.model import DeliveryEvent
from actors.policy.drop_fallback import DropFallbackPolicy, resend_wanted
from tests.unit.harness import Harness

EMAIL = {"to": ["ann@example.com"], "subject": "Hi", "text": "x", "from_addr": "me@example.com",
         "headers": {"Message-ID": "<d1.aicmo@example.com>"}}


def ev(state: str, cause: str | None = None, **kw: object) -> DeliveryEvent:
    return DeliveryEvent(provider_kind="sendgrid", event_id=f"{state}-{cause}-{kw}", kind=state,  # type: ignore[arg-type]
                         state=state, occurred_at=kw.pop("at", 100.0), cause=cause, **kw)  # type: ignore[arg-type]


def test_only_a_providers_own_drop_within_the_window_is_resent() -> None:
    on = DropFallbackPolicy(enabled=True, window_s=60)
    assert resend_wanted(ev("dropped", "provider"), 150.0, on, already_resent=False)
    assert not resend_wanted(ev("dropped", "provider"), 150.0, on, already_resent=True)
    assert not resend_wanted(ev("dropped", "provider"), 161.0, on, already_resent=False)        # too late
    assert not resend_wanted(ev("dropped", "provider"), 150.0, DropFallbackPolicy(), already_resent=False)  # off
    for other in (ev("dropped", "recipient"), ev("bounced", "recipient", bounce="hard"), ev("deferred"),
                  ev("bounced", "provider", bounce="soft")):
        assert not resend_wanted(other, 150.0, on, already_resent=False)


def test_a_dropped_message_is_resent_once_through_another_provider_with_its_message_id() -> None:
    h = Harness({"a": [], "b": []})
    h.spec = msgspec.structs.replace(h.spec, drop_fallback=DropFallbackPolicy(enabled=True, window_s=3600))
    core = h.restart_router()
    served = h.invoke(EMAIL)
    assert served.ok and served.provider == "a"
    dropped = StoredEvent(capability="email_sending", provider="a", received_at=h.clock(), event=ev(
        "dropped", "provider", at=h.clock(), request_id=served.request_id, recipient="ann@example.com"))

    async def rounds() -> list[int]:
        first = await core.drops.handle([dropped], core.resend)
        again = await core.drops.handle([dropped], core.resend)
        # Another router (a replica, a restart) sees the same event: the store says it was re-sent.
        other = h.restart_router()
        return [first, again, await other.drops.handle([dropped], other.resend)]

    assert asyncio.run(rounds()) == [1, 0, 0]
    assert h.calls("a") == 1 and h.calls("b") == 1
    method, payload, ctx = h.adapters["b"].calls[0]
    assert payload.headers["Message-ID"] == "<d1.aicmo@example.com>" and ctx.idempotency_key.startswith("resend-")
