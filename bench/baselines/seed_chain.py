"""The seed's ProviderChain, re-implemented in-process from its description
(shared/seed: "PHASE 0 EXECUTION SUMMARY", provider_chain.py), as the
baseline a user of the seed would have.

What the seed says, and how it is read here:

- ProviderHealth: UNKNOWN, DEGRADED, HEALTHY, UNHEALTHY. "UNKNOWN → DEGRADED
  → HEALTHY (after 5 successes)", "→ UNHEALTHY (after 3 failures)",
  "UNHEALTHY → DEGRADED → HEALTHY (after recovery + successes)": any outcome
  moves UNKNOWN to DEGRADED; 5 consecutive successes make it HEALTHY, 3
  consecutive failures UNHEALTHY; a success of an UNHEALTHY provider makes it
  DEGRADED; a failure of a HEALTHY one makes it DEGRADED.
- ProviderStatus tracks consecutive successes/failures, the last latency and
  an exponential average ("current + exponential average"; weight 0.2, the
  gateway's default, is assumed).
- "Sort key: (health_priority, consecutive_successes, negative_latency)",
  "Healthy providers tried first, unhealthy last (but still tried)": sorted
  descending by (HEALTHY 3, DEGRADED 2, UNKNOWN 1, UNHEALTHY 0; consecutive
  successes; minus the average latency, 0 before any), a stable sort, so
  ties keep the configured order; "Local list sorting" per request.
- "Primary provider tried first; on failure, automatically tries secondary
  provider; can try all N providers or limit with max_fallback_attempts":
  sequential, no cooldown, no circuit breaking, no timeout of its own, every
  provider tried by default.
- "Returns (success, result, provider_used)"; "Last 10 operations kept".
"""

from __future__ import annotations

import enum
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from bench.baselines.base import InProcessProvider, Trace, TraceAttempt


class ProviderHealth(str, enum.Enum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


HEALTH_PRIORITY = {ProviderHealth.HEALTHY: 3, ProviderHealth.DEGRADED: 2, ProviderHealth.UNKNOWN: 1,
                   ProviderHealth.UNHEALTHY: 0}


@dataclass
class ProviderStatus:
    name: str
    health: ProviderHealth = ProviderHealth.UNKNOWN
    consecutive_successes: int = 0
    consecutive_failures: int = 0
    latency_ms: float | None = None
    avg_latency_ms: float | None = None
    total_calls: int = 0
    total_failures: int = 0
    last_error: str | None = None
    last_checked: float | None = None
    healthy_after: int = 5
    unhealthy_after: int = 3
    latency_alpha: float = 0.2

    def _latency(self, latency_ms: float) -> None:
        self.latency_ms = latency_ms
        self.avg_latency_ms = latency_ms if self.avg_latency_ms is None else (
            self.latency_alpha * latency_ms + (1 - self.latency_alpha) * self.avg_latency_ms)

    def mark_success(self, latency_ms: float) -> None:
        self.total_calls += 1
        self.consecutive_successes += 1
        self.consecutive_failures = 0
        self.last_checked = time.time()
        self._latency(latency_ms)
        if self.consecutive_successes >= self.healthy_after:
            self.health = ProviderHealth.HEALTHY
        elif self.health is not ProviderHealth.HEALTHY:
            self.health = ProviderHealth.DEGRADED

    def mark_failure(self, error: str, latency_ms: float) -> None:
        self.total_calls += 1
        self.total_failures += 1
        self.consecutive_failures += 1
        self.consecutive_successes = 0
        self.last_error = error
        self.last_checked = time.time()
        self._latency(latency_ms)
        if self.consecutive_failures >= self.unhealthy_after:
            self.health = ProviderHealth.UNHEALTHY
        else:
            self.health = ProviderHealth.DEGRADED

    def sort_key(self) -> tuple[int, int, float]:
        return (HEALTH_PRIORITY[self.health], self.consecutive_successes,
                -(self.avg_latency_ms if self.avg_latency_ms is not None else 0.0))


class ProviderWrapper:
    """One provider with its health: times each call and folds the outcome in."""

    def __init__(self, provider: InProcessProvider, **policy: Any):
        self.provider = provider
        self.status = ProviderStatus(provider.name, **policy)

    async def invoke(self, method: str, payload: Any) -> Any:
        started = time.perf_counter()
        try:
            value = await self.provider.call(method, payload)
        except Exception as exc:  # the seed caught everything and fell back
            self.status.mark_failure(str(exc), (time.perf_counter() - started) * 1000)
            raise
        self.status.mark_success((time.perf_counter() - started) * 1000)
        return value


class ProviderChain:
    def __init__(self, capability: str, providers: list[InProcessProvider], max_fallback_attempts: int | None = None,
                 **policy: Any):
        self.capability = capability
        self.wrappers = [ProviderWrapper(p, **policy) for p in providers]
        self.max_fallback_attempts = max_fallback_attempts
        self.recent_operations: deque[dict[str, Any]] = deque(maxlen=10)

    def sorted_providers(self) -> list[ProviderWrapper]:
        # A local sorted copy: concurrent requests never see a list mid-mutation.
        return sorted(self.wrappers, key=lambda w: w.status.sort_key(), reverse=True)

    async def invoke_traced(self, method: str, payload: Any) -> Trace:
        order = self.sorted_providers()
        if self.max_fallback_attempts is not None:
            order = order[: 1 + self.max_fallback_attempts]
        trace = Trace(ok=False)
        for w in order:
            started = time.perf_counter()
            try:
                value = await w.invoke(method, payload)
            except Exception as exc:  # noqa: BLE001 - try the next one
                trace.attempts.append(TraceAttempt(w.provider.name, False, (time.perf_counter() - started) * 1000))
                trace.error = f"{w.provider.name}: {exc}"
                self._log(w.provider.name, method, False, str(exc))
                continue
            trace.attempts.append(TraceAttempt(w.provider.name, True, (time.perf_counter() - started) * 1000))
            trace.ok, trace.value, trace.provider, trace.error = True, value, w.provider.name, None
            self._log(w.provider.name, method, True, None)
            return trace
        return trace

    async def invoke(self, method: str, payload: Any) -> tuple[bool, Any, str | None]:
        """The seed's signature: (success, result, provider_used)."""
        t = await self.invoke_traced(method, payload)
        return t.ok, (t.value if t.ok else t.error), t.provider

    def _log(self, provider: str, method: str, ok: bool, error: str | None) -> None:
        self.recent_operations.append({"at": time.time(), "provider": provider, "method": method, "success": ok,
                                       "error": error})
