"""What a recipient (and a provider's events) may see of an idempotency
key: 32 hex of its SHA-256. Here, below the adapters that send it and the
event readers that match it back, so both compute it alike."""

from __future__ import annotations

import hashlib

__all__ = ["key_digest"]


def key_digest(idempotency_key: str) -> str:
    """The key itself may hold things a recipient should not read (callers
    build keys from addresses and lead ids)."""
    return hashlib.sha256(f"key:{idempotency_key}".encode()).hexdigest()[:32]
