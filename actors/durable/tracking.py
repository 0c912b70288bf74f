"""How the store has been answering, as one actor sees it: the evidence
`status` and `self-check` show when the database is down or locked."""

from __future__ import annotations

import threading

import msgspec

from actors.durable.store import StoreHealth


class HealthTracker:
    def __init__(self, url: str, kind: str):
        self._lock = threading.Lock()  # the SQLite store reports from its own thread
        self._health = StoreHealth(url=url, kind=kind)
        self._round_trips = 0

    def round_trip(self, n: int = 1) -> None:
        self._round_trips += n

    def ok(self, now: float) -> None:
        if self._health.ok and self._health.last_ok_at is not None and now - self._health.last_ok_at < 1.0:
            return  # the hot path: nothing changed worth a new snapshot
        with self._lock:
            self._health = StoreHealth(url=self._health.url, kind=self._health.kind, ok=True,
                                       last_error=self._health.last_error, last_ok_at=now)

    def failed(self, error: str, now: float) -> None:
        with self._lock:
            h = self._health
            self._health = StoreHealth(url=h.url, kind=h.kind, ok=False, last_error=error[:500],
                                       failing_since=h.failing_since if not h.ok else now, last_ok_at=h.last_ok_at)

    def snapshot(self) -> StoreHealth:
        return msgspec.structs.replace(self._health, round_trips=self._round_trips)
