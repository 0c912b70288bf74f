"""Durable state: idempotency keys (claims and first results), the delivery
journal of each provider, and the outbox. Behind one async interface
(store.py), implemented by the embedded SQLite file (sqlite.py, one machine)
and by PostgreSQL (postgres.py, shared by every node of a cluster)."""

from actors.durable.location import StoreLocation, parse_state_url, without_password
from actors.durable.opening import open_store
from actors.durable.store import (
    Claims,
    JournalEntry,
    KeyClaim,
    KeyRecord,
    OutboxItem,
    StateStore,
    StoreHealth,
    StoreUnavailable,
)

__all__ = ["Claims", "JournalEntry", "KeyClaim", "KeyRecord", "OutboxItem", "StateStore", "StoreHealth", "StoreLocation",
           "StoreUnavailable", "open_store", "parse_state_url", "without_password"]
