"""Durable state: idempotency keys (claims and first results), the delivery
journal of each provider, the outbox, spend, and the gateway's secrets.
Behind one async interface (store.py), implemented by the embedded SQLite
file (sqlite/, one machine) and by PostgreSQL (postgres/, shared by every
node of a cluster): in each, one module per table family over one seam
that runs statements (sqlite/connection.py, postgres/pool.py). Rows are
read back alike by both (rows.py); the schema is versioned (schema.py)."""

from actors.durable.location import StoreLocation, Transport, is_local_host, parse_state_url, without_password
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
           "StoreUnavailable", "Transport", "is_local_host", "open_store", "parse_state_url", "without_password"]
