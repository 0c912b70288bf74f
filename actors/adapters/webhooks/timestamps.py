"""The timestamp format of webhook bodies, shared by the webhook-dispatch
adapters (webhook.py, make.py)."""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["iso_timestamp"]


def iso_timestamp(epoch_s: float) -> str:
    """ISO 8601 in UTC with milliseconds, e.g. 2026-01-31T12:00:00.000Z."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
