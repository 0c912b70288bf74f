"""The suppression list: which events put an address on it (a hard bounce
the recipient caused, nothing else), and a router refusing a send to a
listed address with kind `suppressed`, before any provider is tried."""

from __future__ import annotations

import asyncio

import msgspec

from actors.durable.store import Suppression
from actors.errors import ErrorKind
from actors.events.model import DeliveryEvent
from actors.policy.suppression import to_suppress
from tests.unit.harness import Harness


def ev(state: str, **kw: object) -> DeliveryEvent:
    return DeliveryEvent(provider_kind="mailgun", event_id=state + str(kw), kind=state, state=state,  # type: ignore[arg-type]
                         occurred_at=1.0, **kw)  # type: ignore[arg-type]


def test_only_a_recipients_hard_bounce_suppresses() -> None:
    events = [ev("bounced", bounce="hard", cause="recipient", recipient="Bad@Example.com", reason="550 no user"),
              ev("bounced", bounce="hard", cause="recipient", recipient="bad@example.com"),
              ev("bounced", bounce="soft", cause="provider", recipient="blocked@example.com"),
              ev("dropped", cause="provider", recipient="dropped@example.com"),
              ev("deferred", recipient="later@example.com")]
    assert [(a, r) for a, r, _ in to_suppress(events)] == [("bad@example.com", "hard bounce: 550 no user")]


def test_a_router_refuses_a_send_to_a_suppressed_address() -> None:
    h = Harness({"a": [], "b": []})
    h.spec = msgspec.structs.replace(h.spec, suppress=True)
    h.restart_router()
    asyncio.run(h.store.suppress_add([Suppression(capability="email_sending", address="ann@example.com",
                                                  reason="hard bounce: 550", added_at=1.0)]))
    refused = h.invoke({"to": ["ann@example.com"], "subject": "Hi", "text": "x", "from_addr": "me@example.com"})
    assert not refused.ok and refused.error.kind is ErrorKind.SUPPRESSED and refused.attempts == []
    assert "ann@example.com" in refused.error.message and h.calls("a") == h.calls("b") == 0
    served = h.invoke({"to": ["bob@example.com"], "subject": "Hi", "text": "x", "from_addr": "me@example.com"})
    assert served.ok
