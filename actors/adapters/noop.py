"""The seed's no-op fallback: validates, records, and delivers nothing.

It answers `ok` so that a dry-run setup works end to end, and says plainly
in every value that nothing was delivered. For production fallbacks prefer a
provider that queues (see the README): a no-op that answers ok hides loss.
"""

from __future__ import annotations

from typing import Any

from actors.adapters.base import Adapter, AdapterSettings
from actors.messages import CallContext
from actors.payloads import Payload


class NoopSettings(AdapterSettings):
    pass


class NoopAdapter(Adapter):
    name = "noop"
    Settings = NoopSettings
    reaches_network = False
    delivers = False
    has_probe = False

    async def call(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        return {
            "delivered": False,
            "note": f"noop provider {self.provider!r}: {method} was accepted and NOT delivered",
            "request_id": ctx.request_id,
        }
