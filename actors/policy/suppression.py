"""Which delivery events put an address on the suppression list: a hard
bounce the recipient caused (the address does not exist, or refuses
mail). Not a soft bounce (it may pass later), not a block (the provider's
IP was refused, not the address), not a drop (the provider did not even
try). Pure: the caller stores what it returns."""

from __future__ import annotations

from collections.abc import Iterable

from actors.events.model import DeliveryEvent

__all__ = ["to_suppress"]


def to_suppress(events: Iterable[DeliveryEvent]) -> list[tuple[str, str, DeliveryEvent]]:
    """(address, reason, event) for each address to suppress, once each."""
    out: dict[str, tuple[str, str, DeliveryEvent]] = {}
    for e in events:
        if e.state == "bounced" and e.bounce == "hard" and e.cause == "recipient" and e.recipient:
            address = e.recipient.strip().lower()
            out.setdefault(address, (address, f"hard bounce: {e.reason or e.kind}"[:200], e))
    return list(out.values())
