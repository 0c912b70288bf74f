"""The suppression list at send time: a send to an address that bounced
hard (actors/events: a hard bounce the recipient caused) is refused with
kind `suppressed`, before any provider is tried, so a bad address does not
keep costing sends and the sender's reputation.

Only email sends carry recipients; a store that does not answer lets the
send through (the list is a courtesy, not a guarantee, and the send path
must not depend on it)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from actors.errors import StoreUnavailable
from actors.payloads import SendEmail

__all__ = ["suppressed"]

log = logging.getLogger("aicmo.suppression")


async def suppressed(store: Callable[[], Any], capability: str, payload: Any) -> str | None:
    """Why the send is refused, or None."""
    if not isinstance(payload, SendEmail) or not payload.to:
        return None
    try:
        rows = await store().suppress_list(capability, list(payload.to))
    except StoreUnavailable as exc:
        log.warning("%s: suppression list not read (%s); the send goes ahead", capability, exc)
        return None
    if not rows:
        return None
    listed = ", ".join(f"{r.address} ({r.reason})" for r in rows[:5])
    return (f"{len(rows)} recipient(s) on the suppression list: {listed}; nothing was sent. "
            "`aicmo-gateway suppression remove ADDRESS` allows an address again")
