"""The shared state store, PostgreSQL (`store.py`), for every node of a
cluster: the connection pool every statement goes through (`pool.py`,
which also migrates the schema), what the statements share (`sql.py`), and
one module per table family: idempotency keys, where a key is claimed
(`keys.py`), delivery journals (`journal.py`), the outbox (`outbox.py`),
spend and meters (`spend.py`), secrets and markers (`shared.py`). psycopg
is imported only when the first statement runs."""

from actors.durable.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
