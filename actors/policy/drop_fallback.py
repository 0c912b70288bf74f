"""Whether a message a provider dropped is sent again through the next
provider (opt-in per capability: `delivery.drop_fallback`), as pure code.

Only a terminal failure on the provider's side qualifies: `dropped` for
the provider's own reasons. Not a bounce (the receiving side refused the
address: another provider would be refused too), not `deferred` (the
provider is still trying), not a drop for the recipient's sake (the
provider's suppression lists). Within `window_s` of the drop's time, and
once per message: the re-send carries the same Message-ID, so receiving
systems can deduplicate should the first provider deliver after all.
"""

from __future__ import annotations

import msgspec

from actors.events.model import DeliveryEvent

__all__ = ["DropFallbackPolicy", "resend_wanted"]


class DropFallbackPolicy(msgspec.Struct, frozen=True, kw_only=True):
    enabled: bool = False
    window_s: float = 3600.0


def resend_wanted(event: DeliveryEvent, now: float, policy: DropFallbackPolicy, already_resent: bool) -> bool:
    return (policy.enabled and not already_resent and event.state == "dropped" and event.cause == "provider"
            and now - event.occurred_at <= policy.window_s)
