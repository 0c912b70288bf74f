"""What the PostgreSQL statements share: the server's clock in SQL, how
often a race is asked about again, and many rows sent as one parameter."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["DECIDE_ROUNDS", "NOW", "rows_json"]

# The server's clock, the one every machine shares: leases are set and compared on it.
NOW = "extract(epoch from clock_timestamp())::float8"

# How often a key that was neither won nor seen (a competing insert committed
# during the statement) is asked about again before we give up on the store.
DECIDE_ROUNDS = 5

# Many rows go to the server as one JSON document (bytes as base64): one
# parameter, encoded by msgspec, instead of an array per column dumped in Python.
_json_rows = msgspec.json.Encoder().encode


def rows_json(rows: list[dict[str, Any]]) -> str:
    return _json_rows(rows).decode()
