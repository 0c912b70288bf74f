"""The embedded state store, one SQLite file (`store.py`), for one machine
or nodes that share its directory: the file and the thread every statement
runs on (`connection.py`), and one module per table family: idempotency
keys (`keys.py`), delivery journals (`journal.py`), the outbox
(`outbox.py`), spend and meters (`spend.py`), secrets and markers
(`shared.py`)."""

from actors.durable.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
