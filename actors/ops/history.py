"""The last hour of each provider's status, sampled by the supervisor, and
what it adds up to (`ProviderTrend`, read by policy.recommend.for_trends).

Pure: samples come in with their time; nothing here reads a clock.

Throttling is measured as time, not as a share of samples: each sample that
finds a provider throttled adds the interval from when the 429 arrived
(`last_checked`, when the last error was a rate limit) until the reset the
provider named (`throttled_until`), so sparse samples still see the whole of
each throttle they catch.
"""

from __future__ import annotations

import bisect
import statistics
from collections import deque

import msgspec

from actors.errors import ErrorKind
from actors.messages import ProviderStatus
from actors.ops.recommend import ProviderTrend, slower_than_peers

__all__ = ["History", "Sample", "union_length"]

WINDOW_S = 3600.0


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    at: float
    health: str
    throttled_from: float | None = None
    throttled_until: float | None = None
    latency_ewma_ms: float | None = None
    total_calls: int = 0


def sample_of(status: ProviderStatus, at: float) -> Sample:
    throttled_from = throttled_until = None
    if status.throttled_until is not None and status.throttled_until > at:
        throttled_until = status.throttled_until
        throttled_from = at
        if status.last_error_kind is ErrorKind.RATE_LIMITED and status.last_checked is not None:
            throttled_from = min(at, status.last_checked)
    return Sample(at=at, health=str(status.health), throttled_from=throttled_from, throttled_until=throttled_until,
                  latency_ewma_ms=status.latency_ewma_ms, total_calls=status.total_calls)


def union_length(intervals: list[tuple[float, float]]) -> float:
    total = 0.0
    end = float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


class History:
    """Samples per (capability, provider), kept for `window_s`."""

    def __init__(self, window_s: float = WINDOW_S):
        self.window_s = window_s
        self._samples: dict[tuple[str, str], deque[Sample]] = {}
        self._first: dict[tuple[str, str], float] = {}

    def add(self, status: ProviderStatus, at: float) -> None:
        key = (status.capability, status.name)
        q = self._samples.setdefault(key, deque())
        self._first.setdefault(key, at)
        q.append(sample_of(status, at))
        while q and q[0].at < at - self.window_s:
            q.popleft()

    def samples(self, capability: str, provider: str) -> list[Sample]:
        return list(self._samples.get((capability, provider), ()))

    def trends(self, capability: str, now: float) -> dict[str, ProviderTrend]:
        start = now - self.window_s
        names = [p for c, p in self._samples if c == capability]
        series = {n: [s for s in self._samples[(capability, n)] if s.at >= start] for n in names}
        out: dict[str, ProviderTrend] = {}
        for name, samples in series.items():
            if not samples:
                continue
            first = max(self._first[(capability, name)], start)
            observed = max(0.0, now - first)
            throttled = union_length([(max(s.throttled_from, first), min(s.throttled_until, now))
                                      for s in samples if s.throttled_from is not None and s.throttled_until is not None
                                      and min(s.throttled_until, now) > max(s.throttled_from, first)])
            comparable = slower = 0
            mine: list[float] = []
            peers_all: list[float] = []
            for s in samples:
                if s.latency_ewma_ms is None or s.total_calls < 5:
                    continue
                peers = [p.latency_ewma_ms for other, ps in series.items() if other != name
                         for p in [_nearest(ps, s.at)] if p is not None and p.latency_ewma_ms is not None
                         and p.total_calls >= 5]
                if not peers:
                    continue
                comparable += 1
                mine.append(s.latency_ewma_ms)
                peers_all.append(statistics.median(peers))
                if slower_than_peers(s.latency_ewma_ms, peers):
                    slower += 1
            out[name] = ProviderTrend(
                observed_s=observed, throttled_s=min(throttled, observed), samples=len(samples),
                comparable_samples=comparable, slower_samples=slower,
                latency_ms=statistics.median(mine) if mine else None,
                peers_latency_ms=statistics.median(peers_all) if peers_all else None)
        return out


def _nearest(samples: list[Sample], at: float, tolerance_s: float = 60.0) -> Sample | None:
    """The sample of another provider taken at (about) the same time."""
    i = bisect.bisect_left([s.at for s in samples], at)
    near = [s for s in samples[max(0, i - 1):i + 1] if abs(s.at - at) <= tolerance_s]
    return min(near, key=lambda s: abs(s.at - at)) if near else None
