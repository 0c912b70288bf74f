"""A request's delivery events folded into its delivery state, per
recipient and overall. Events come in any order and more than once
(providers retry, batch and reorder): they are put in the provider's time
order, each event id counted once, and a terminal state is never undone by
a late `deferred` or `accepted`."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from actors.events.model import TERMINAL_STATES, DeliveryEvent

__all__ = ["DeliveryView", "fold", "in_order"]

# Ties in time: the order a message goes through them.
_RANK = {"accepted": 0, "deferred": 1, "delivered": 2, "bounced": 2, "dropped": 2, "complained": 3, None: 4}


class DeliveryView(msgspec.Struct, frozen=True, kw_only=True):
    state: str | None                   # overall: the latest recipient state (None: no delivery event yet)
    recipients: dict[str, str] = {}     # address -> its state
    events: list[DeliveryEvent] = []    # deduplicated, in order


def in_order(events: Iterable[DeliveryEvent]) -> list[DeliveryEvent]:
    seen: dict[tuple[str, str], DeliveryEvent] = {}
    for event in events:
        seen.setdefault((event.provider_kind, event.event_id), event)
    return sorted(seen.values(), key=lambda e: (e.occurred_at, _RANK.get(e.state, 4)))


def fold(events: Iterable[DeliveryEvent]) -> DeliveryView:
    ordered = in_order(events)
    recipients: dict[str, str] = {}
    overall: str | None = None
    for event in ordered:
        if event.state is None:
            continue
        who = (event.recipient or "").lower()
        before = recipients.get(who)
        if before in TERMINAL_STATES and event.state not in TERMINAL_STATES:
            continue   # a late deferred/accepted: the message's fate is known
        recipients[who] = event.state
        overall = event.state
    return DeliveryView(state=overall, recipients={k: v for k, v in recipients.items() if k}, events=ordered)
