"""Durable state: first results of idempotency keys, the delivery journal of
each provider, and the outbox. Behind a small interface (store.py) so that a
shared database can replace the embedded SQLite file on a multi-node cluster."""

from actors.durable.store import JournalEntry, OutboxItem, StateStore, open_store

__all__ = ["JournalEntry", "OutboxItem", "StateStore", "open_store"]
