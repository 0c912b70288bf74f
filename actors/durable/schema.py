"""The store's schema, versioned, for SQLite and PostgreSQL.

Each list holds the steps from one version to the next; a store applies
the ones its database lacks when it first connects, under a lock, so
several actors starting at once migrate once. Add a step; never edit one
that shipped.

Every table is keyed by `namespace`: several gateways can share one
database (PostgreSQL) or one file (`sqlite:///`), each seeing only its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # a gateway on PostgreSQL never loads sqlite3
    import sqlite3

_SQLITE_V1 = """
CREATE TABLE keys (
    namespace TEXT NOT NULL, capability TEXT NOT NULL, key TEXT NOT NULL,
    state TEXT NOT NULL,                 -- running (a claim) | done (the first result)
    fingerprint TEXT, owner TEXT, lease_until REAL, result BLOB, stored_at REAL NOT NULL,
    PRIMARY KEY (namespace, capability, key));
CREATE INDEX keys_age ON keys (namespace, state, stored_at);
CREATE TABLE journal (
    namespace TEXT NOT NULL, capability TEXT NOT NULL, provider TEXT NOT NULL, key TEXT NOT NULL,
    request_id TEXT NOT NULL, method TEXT NOT NULL, state TEXT NOT NULL, incarnation TEXT NOT NULL,
    updated_at REAL NOT NULL, value BLOB, error TEXT,
    PRIMARY KEY (namespace, capability, key, provider));
CREATE INDEX journal_ended ON journal (namespace, state, updated_at);
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, namespace TEXT NOT NULL, capability TEXT NOT NULL, method TEXT NOT NULL,
    payload BLOB NOT NULL, idempotency_key TEXT NOT NULL, request_id TEXT NOT NULL, state TEXT NOT NULL,
    reason TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL, provider TEXT, error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, result BLOB, lease_owner TEXT, lease_until REAL);
CREATE INDEX outbox_by_state ON outbox (namespace, capability, state, id);
CREATE INDEX outbox_by_key ON outbox (namespace, capability, idempotency_key);
CREATE UNIQUE INDEX outbox_live_key ON outbox (namespace, capability, idempotency_key)
    WHERE state IN ('pending', 'parked');
CREATE TABLE secrets (
    namespace TEXT NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (namespace, name));
CREATE TABLE markers (token TEXT PRIMARY KEY, node TEXT NOT NULL, created_at REAL NOT NULL);
"""


def _sqlite_v1(db: sqlite3.Connection, namespace: str) -> None:
    """The first versioned schema. A file from before versions (tables
    `results`, `journal`, `outbox` without a namespace: one file per gateway)
    is carried over into it, its rows given this gateway's namespace: queued
    and parked requests must survive an upgrade."""
    legacy = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "results" in legacy:
        for table in ("journal", "outbox"):
            db.execute(f"ALTER TABLE {table} RENAME TO legacy_{table}")
        for index in ("results_age", "outbox_by_state", "outbox_by_key"):
            db.execute(f"DROP INDEX IF EXISTS {index}")
    for statement in _SQLITE_V1.split(";"):
        if statement.strip():
            db.execute(statement)
    if "results" not in legacy:
        return
    db.execute("INSERT INTO keys (namespace, capability, key, state, result, stored_at) "
               "SELECT ?, capability, key, 'done', result, stored_at FROM results", (namespace,))
    db.execute("INSERT INTO journal SELECT ?, capability, provider, key, request_id, method, state, incarnation, "
               "updated_at, value, error FROM legacy_journal", (namespace,))
    db.execute("INSERT INTO outbox (id, namespace, capability, method, payload, idempotency_key, request_id, state, "
               "reason, created_at, updated_at, provider, error, attempts, result) SELECT id, ?, capability, method, "
               "payload, idempotency_key, request_id, state, reason, created_at, updated_at, provider, error, "
               "attempts, result FROM legacy_outbox ORDER BY id", (namespace,))
    for table in ("results", "legacy_journal", "legacy_outbox"):
        db.execute(f"DROP TABLE {table}")


_SQLITE_V2 = """
CREATE TABLE spend (
    namespace TEXT NOT NULL, capability TEXT NOT NULL, provider TEXT NOT NULL,
    period TEXT NOT NULL,                 -- hour | day | month
    period_start REAL NOT NULL,           -- UTC epoch seconds (cost.period_bounds)
    calls INTEGER NOT NULL DEFAULT 0, maybe_calls INTEGER NOT NULL DEFAULT 0,
    amount_nanos INTEGER NOT NULL DEFAULT 0,   -- spend x 1e9: exact, and addable in SQL
    currency TEXT, updated_at REAL NOT NULL,
    PRIMARY KEY (namespace, capability, provider, period, period_start));
CREATE TABLE provider_meter (
    namespace TEXT NOT NULL, capability TEXT NOT NULL, provider TEXT NOT NULL,
    lifetime_calls INTEGER NOT NULL DEFAULT 0,
    balance_remaining REAL, balance_at REAL, balance_calls_at INTEGER,
    PRIMARY KEY (namespace, capability, provider));
"""


def _sqlite_v2(db: sqlite3.Connection, namespace: str) -> None:
    """Spend per provider and period, and each provider's lifetime calls and
    live balance (cost and quotas)."""
    for statement in _SQLITE_V2.split(";"):
        if statement.strip():
            db.execute(statement)


_SQLITE_V3 = """
CREATE TABLE delivery_events (
    namespace TEXT NOT NULL, capability TEXT NOT NULL, provider TEXT NOT NULL, event_id TEXT NOT NULL,
    request_id TEXT, key_hash TEXT, message_ref TEXT,    -- what ties it to a request (actors/events/matching.py)
    state TEXT, cause TEXT, recipient TEXT, occurred_at REAL NOT NULL, received_at REAL NOT NULL,
    event BLOB NOT NULL,                                  -- the DeliveryEvent, msgpack
    PRIMARY KEY (namespace, capability, provider, event_id));
CREATE INDEX delivery_events_request ON delivery_events (namespace, request_id);
CREATE INDEX delivery_events_key ON delivery_events (namespace, key_hash);
CREATE INDEX delivery_events_ref ON delivery_events (namespace, message_ref);
CREATE INDEX delivery_events_recent ON delivery_events (namespace, capability, received_at);
CREATE TABLE suppressions (
    namespace TEXT NOT NULL, capability TEXT NOT NULL, address TEXT NOT NULL,
    reason TEXT NOT NULL, provider TEXT, request_id TEXT, added_at REAL NOT NULL,
    PRIMARY KEY (namespace, capability, address));
CREATE TABLE sent_messages (
    namespace TEXT NOT NULL, capability TEXT NOT NULL, request_id TEXT NOT NULL,
    provider TEXT NOT NULL, key_hash TEXT, message_ref TEXT, rfc_message_id TEXT,
    payload BLOB NOT NULL, sent_at REAL NOT NULL, resent_at REAL,   -- kept for the drop fallback only
    PRIMARY KEY (namespace, capability, request_id));
CREATE INDEX sent_messages_age ON sent_messages (namespace, sent_at);
"""


def _sqlite_v3(db: sqlite3.Connection, namespace: str) -> None:
    """Delivery events from the providers' webhooks, and the addresses
    refused after a hard bounce (issue 22)."""
    for statement in _SQLITE_V3.split(";"):
        if statement.strip():
            db.execute(statement)


SQLITE_MIGRATIONS: list[Callable[[sqlite3.Connection, str], None]] = [_sqlite_v1, _sqlite_v2, _sqlite_v3]
SQLITE_VERSION = len(SQLITE_MIGRATIONS)


# PostgreSQL: tables are prefixed, so the gateway can live in a database (and
# schema) that holds other things. Times are epoch seconds (double precision),
# like the callers' clocks; leases are set and compared on the server's clock.
PG_MIGRATIONS: list[str] = [
    """
    CREATE TABLE aicmo_keys (
        namespace TEXT NOT NULL, capability TEXT NOT NULL, key TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('running', 'done')),
        fingerprint TEXT, owner TEXT, lease_until DOUBLE PRECISION, result BYTEA,
        stored_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (namespace, capability, key));
    CREATE INDEX aicmo_keys_age ON aicmo_keys (namespace, state, stored_at);
    CREATE TABLE aicmo_journal (
        namespace TEXT NOT NULL, capability TEXT NOT NULL, provider TEXT NOT NULL, key TEXT NOT NULL,
        request_id TEXT NOT NULL, method TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('started', 'delivered', 'failed', 'unknown')),
        incarnation TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL, value BYTEA, error TEXT,
        PRIMARY KEY (namespace, capability, key, provider));
    CREATE INDEX aicmo_journal_ended ON aicmo_journal (namespace, state, updated_at);
    CREATE TABLE aicmo_outbox (
        id BIGSERIAL PRIMARY KEY, namespace TEXT NOT NULL, capability TEXT NOT NULL, method TEXT NOT NULL,
        payload BYTEA NOT NULL, idempotency_key TEXT NOT NULL, request_id TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'parked', 'delivered', 'dropped')),
        reason TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, updated_at DOUBLE PRECISION NOT NULL,
        provider TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0, result BYTEA,
        lease_owner TEXT, lease_until DOUBLE PRECISION);
    CREATE INDEX aicmo_outbox_by_state ON aicmo_outbox (namespace, capability, state, id);
    CREATE INDEX aicmo_outbox_by_key ON aicmo_outbox (namespace, capability, idempotency_key);
    CREATE UNIQUE INDEX aicmo_outbox_live_key ON aicmo_outbox (namespace, capability, idempotency_key)
        WHERE state IN ('pending', 'parked');
    CREATE TABLE aicmo_secrets (
        namespace TEXT NOT NULL, name TEXT NOT NULL, value BYTEA NOT NULL, created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (namespace, name));
    CREATE TABLE aicmo_markers (token TEXT PRIMARY KEY, node TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL);
    """,
    """
    CREATE TABLE aicmo_spend (
        namespace TEXT NOT NULL, capability TEXT NOT NULL, provider TEXT NOT NULL,
        period TEXT NOT NULL CHECK (period IN ('hour', 'day', 'month')),
        period_start DOUBLE PRECISION NOT NULL,
        calls BIGINT NOT NULL DEFAULT 0, maybe_calls BIGINT NOT NULL DEFAULT 0,
        amount_nanos BIGINT NOT NULL DEFAULT 0,
        currency TEXT, updated_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (namespace, capability, provider, period, period_start));
    CREATE TABLE aicmo_provider_meter (
        namespace TEXT NOT NULL, capability TEXT NOT NULL, provider TEXT NOT NULL,
        lifetime_calls BIGINT NOT NULL DEFAULT 0,
        balance_remaining DOUBLE PRECISION, balance_at DOUBLE PRECISION, balance_calls_at BIGINT,
        PRIMARY KEY (namespace, capability, provider));
    """,
    """
    CREATE TABLE aicmo_delivery_events (
        namespace TEXT NOT NULL, capability TEXT NOT NULL, provider TEXT NOT NULL, event_id TEXT NOT NULL,
        request_id TEXT, key_hash TEXT, message_ref TEXT,
        state TEXT, cause TEXT, recipient TEXT, occurred_at DOUBLE PRECISION NOT NULL,
        received_at DOUBLE PRECISION NOT NULL, event BYTEA NOT NULL,
        PRIMARY KEY (namespace, capability, provider, event_id));
    CREATE INDEX aicmo_delivery_events_request ON aicmo_delivery_events (namespace, request_id);
    CREATE INDEX aicmo_delivery_events_key ON aicmo_delivery_events (namespace, key_hash);
    CREATE INDEX aicmo_delivery_events_ref ON aicmo_delivery_events (namespace, message_ref);
    CREATE INDEX aicmo_delivery_events_recent ON aicmo_delivery_events (namespace, capability, received_at);
    CREATE TABLE aicmo_suppressions (
        namespace TEXT NOT NULL, capability TEXT NOT NULL, address TEXT NOT NULL,
        reason TEXT NOT NULL, provider TEXT, request_id TEXT, added_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (namespace, capability, address));
    CREATE TABLE aicmo_sent_messages (
        namespace TEXT NOT NULL, capability TEXT NOT NULL, request_id TEXT NOT NULL,
        provider TEXT NOT NULL, key_hash TEXT, message_ref TEXT, rfc_message_id TEXT,
        payload BYTEA NOT NULL, sent_at DOUBLE PRECISION NOT NULL, resent_at DOUBLE PRECISION,
        PRIMARY KEY (namespace, capability, request_id));
    CREATE INDEX aicmo_sent_messages_age ON aicmo_sent_messages (namespace, sent_at);
    """,
]
PG_VERSION = len(PG_MIGRATIONS)
