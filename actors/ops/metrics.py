"""Metrics for the Ray dashboard and Prometheus, with `ray.util.metrics`.

Ray exports them on each node's metrics port (`ray start --metrics-export-port`)
as `ray_<name>` (counters end in `_total`), about ten seconds after they are
recorded; `config/grafana/aicmo-gateway.json` is a dashboard over them.

| metric (as exported) | kind | labels | recorded by |
| --- | --- | --- | --- |
| `ray_aicmo_requests_total` | counter | capability, method, provider, outcome, replica | router |
| `ray_aicmo_request_latency_ms` | histogram | capability, outcome, replica | router |
| `ray_aicmo_attempts_total` | counter | capability, provider, outcome, role (first, fallback, hedge) | router |
| `ray_aicmo_fallbacks_total` | counter | capability, from_provider, to_provider | router |
| `ray_aicmo_provider_health` | gauge | capability, provider (0 unknown, 1 unhealthy, 2 throttled, 3 degraded, 4 healthy) | provider |
| `ray_aicmo_provider_latency_ms` | histogram | capability, provider, outcome | provider |
| `ray_aicmo_provider_in_flight` | gauge | capability, provider | provider |
| `ray_aicmo_outbox_depth` | gauge | capability, state (pending, parked) | supervisor |
| `ray_aicmo_reachable` | gauge | capability, provider, node (1 its probe passes from that node) | supervisor |
| `ray_aicmo_capability_served` | gauge | capability (1 a provider that delivers passed its check) | supervisor |
| `ray_aicmo_hook_calls_total` | counter | event, hook, outcome (ok, error, timeout) | router, provider |
| `ray_aicmo_chaos_fault_active` | gauge | capability, provider (1 while a live fault is set: `chaos inject`) | provider |
| `ray_aicmo_chaos_applied_total` | counter | capability, provider, action (delay, fail) | provider |
| `ray_aicmo_outlier_ejections_total` | counter | capability, provider, reason (failure_percentage, success_rate, slow_calls) | router |
| `ray_aicmo_outlier_ejected` | gauge | capability, provider (1 while ejected) | router |
| `ray_aicmo_outlier_panic` | gauge | capability (1 while ejections are ignored) | router |

`outcome` is `ok` or an error kind (`all_providers_failed`, `transient`, ...);
`provider` is `none` when no provider served the request.

On the request's path the actors only add to in-memory counts; a background
task hands them to Ray every `metrics.flush_interval_s`. Gauges are set
again on that schedule too, even when nothing changed: Ray's metrics agent
forgets a gauge series its worker has not reported for two export intervals
(about 20 s), so a value set once per self-check would be missing from most
scrapes (`HeldGauges`). Ray's histograms
report bucket counts exactly; their `_sum` is approximate (Ray records each
value at its bucket's midpoint), so use `histogram_quantile` over buckets.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Protocol

import msgspec

from actors.messages import Decision
from actors.ops.privacy import method_label

__all__ = ["DEFINITIONS", "HEALTH_CODE", "HeldGauges", "MemoryRecorder", "MetricDef", "RayRecorder", "Recorder",
           "RouterMetrics", "exported_name", "outcome_of"]


class MetricDef(msgspec.Struct, frozen=True):
    name: str
    kind: str                 # counter, gauge, histogram
    description: str
    tag_keys: tuple[str, ...]


DEFINITIONS: dict[str, MetricDef] = {d.name: d for d in [
    MetricDef("aicmo_requests", "counter", "Requests finished by a router",
              ("capability", "method", "provider", "outcome", "replica")),
    MetricDef("aicmo_request_latency_ms", "histogram", "Time from invoke to result, as the router measures it",
              ("capability", "outcome", "replica")),
    MetricDef("aicmo_attempts", "counter", "Attempts sent to providers", ("capability", "provider", "outcome", "role")),
    MetricDef("aicmo_fallbacks", "counter", "Fallbacks from one provider to the next",
              ("capability", "from_provider", "to_provider")),
    MetricDef("aicmo_provider_health", "gauge",
              "Provider health: 0 unknown, 1 unhealthy, 2 throttled, 3 degraded, 4 healthy", ("capability", "provider")),
    MetricDef("aicmo_provider_latency_ms", "histogram", "Latency of calls as the provider actor measures them",
              ("capability", "provider", "outcome")),
    MetricDef("aicmo_provider_in_flight", "gauge", "Calls running at a provider actor", ("capability", "provider")),
    MetricDef("aicmo_outbox_depth", "gauge", "Requests in the outbox", ("capability", "state")),
    MetricDef("aicmo_reachable", "gauge", "1 when the provider's probe passes from the node, else 0",
              ("capability", "provider", "node")),
    MetricDef("aicmo_capability_served", "gauge", "1 when a provider that delivers passed the last check",
              ("capability",)),
    MetricDef("aicmo_hook_calls", "counter", "Hook calls by outcome", ("event", "hook", "outcome")),
    MetricDef("aicmo_chaos_fault_active", "gauge", "1 while a live fault (chaos inject) is set on the provider",
              ("capability", "provider")),
    MetricDef("aicmo_chaos_applied", "counter", "Attempts a live fault acted on, by what it did",
              ("capability", "provider", "action")),
    MetricDef("aicmo_provider_spend", "counter", "Spend on charged calls, in the provider's currency",
              ("capability", "provider", "currency")),
    MetricDef("aicmo_provider_quota_left", "gauge", "Calls left in the provider's quota this period",
              ("capability", "provider")),
    MetricDef("aicmo_outlier_ejections", "counter", "Providers ejected as outliers against their peers",
              ("capability", "provider", "reason")),
    MetricDef("aicmo_outlier_ejected", "gauge", "1 while the provider is ejected as an outlier", ("capability", "provider")),
    MetricDef("aicmo_outlier_panic", "gauge", "1 while too few providers are in rotation and ejections are ignored",
              ("capability",)),
]}

HEALTH_CODE = {"unknown": 0, "unhealthy": 1, "throttled": 2, "degraded": 3, "healthy": 4}


def exported_name(name: str) -> str:
    """The name Prometheus sees."""
    d = DEFINITIONS[name]
    return f"ray_{name}_total" if d.kind == "counter" else f"ray_{name}"


def outcome_of(ok: bool, kind: Any) -> str:
    return "ok" if ok else (str(kind) if kind else "failed")


class Recorder(Protocol):
    def inc(self, name: str, value: float, tags: dict[str, str]) -> None: ...
    def set(self, name: str, value: float, tags: dict[str, str]) -> None: ...
    def observe(self, name: str, value: float, tags: dict[str, str]) -> None: ...


class RayRecorder:
    """Records with ray.util.metrics; the metric objects are made on first use, in the actor's process."""

    def __init__(self, latency_buckets_ms: Sequence[float]):
        self._buckets = sorted({float(b) for b in latency_buckets_ms if b > 0})
        self._made: dict[str, Any] = {}

    def _metric(self, name: str) -> Any:
        metric = self._made.get(name)
        if metric is None:
            from ray.util import metrics

            d = DEFINITIONS[name]
            if d.kind == "counter":
                metric = metrics.Counter(d.name, description=d.description, tag_keys=d.tag_keys)
            elif d.kind == "gauge":
                metric = metrics.Gauge(d.name, description=d.description, tag_keys=d.tag_keys)
            else:
                metric = metrics.Histogram(d.name, description=d.description, boundaries=self._buckets,
                                           tag_keys=d.tag_keys)
            self._made[name] = metric
        return metric

    def inc(self, name: str, value: float, tags: dict[str, str]) -> None:
        self._metric(name).inc(value, tags=tags)

    def set(self, name: str, value: float, tags: dict[str, str]) -> None:
        self._metric(name).set(value, tags=tags)

    def observe(self, name: str, value: float, tags: dict[str, str]) -> None:
        self._metric(name).observe(value, tags=tags)


class HeldGauges:
    """Gauges set on events (a self-check, an outbox sample) and reported
    again on every `refresh()`, so Ray keeps exporting them between events."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def set(self, name: str, value: float, tags: dict[str, str]) -> None:
        self._values[(name, tuple(sorted(tags.items())))] = value
        self.recorder.set(name, value, tags)

    def forget(self, name: str) -> None:
        """Stop reporting every series of `name` (Ray drops them soon after)."""
        self._values = {k: v for k, v in self._values.items() if k[0] != name}

    def refresh(self) -> None:
        for (name, tags), value in self._values.items():
            self.recorder.set(name, value, dict(tags))


class MemoryRecorder:
    """Keeps what was recorded, for tests."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self.gauges: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.observations: list[tuple[str, float, dict[str, str]]] = []

    def inc(self, name: str, value: float, tags: dict[str, str]) -> None:
        _check(name, tags)
        self.counters[(name, tuple(sorted(tags.items())))] += value

    def set(self, name: str, value: float, tags: dict[str, str]) -> None:
        _check(name, tags)
        self.gauges[(name, tuple(sorted(tags.items())))] = value

    def observe(self, name: str, value: float, tags: dict[str, str]) -> None:
        _check(name, tags)
        self.observations.append((name, value, tags))

    def counter(self, name: str, **tags: str) -> float:
        return sum(v for (n, t), v in self.counters.items() if n == name and tags.items() <= dict(t).items())


def _check(name: str, tags: dict[str, str]) -> None:
    d = DEFINITIONS[name]
    if set(tags) != set(d.tag_keys):
        raise ValueError(f"{name}: tags {sorted(tags)} != {sorted(d.tag_keys)}")


class Buffered:
    """Counts and observations kept in memory, handed to a Recorder on `flush`."""

    def __init__(self, recorder: Recorder):
        self.recorder = recorder
        self._counts: dict[tuple[str, tuple[str, ...]], float] = defaultdict(float)
        self._observed: list[tuple[str, tuple[str, ...], float]] = []

    def count(self, name: str, *tags: str, value: float = 1.0) -> None:
        self._counts[(name, tags)] += value

    def observe(self, name: str, value: float, *tags: str) -> None:
        if len(self._observed) < 200_000:
            self._observed.append((name, tags, value))

    def flush(self) -> None:
        counts, self._counts = self._counts, defaultdict(float)
        observed, self._observed = self._observed, []
        for (name, tags), value in counts.items():
            self.recorder.inc(name, value, dict(zip(DEFINITIONS[name].tag_keys, tags, strict=True)))
        for name, tags, value in observed:
            self.recorder.observe(name, value, dict(zip(DEFINITIONS[name].tag_keys, tags, strict=True)))


class RouterMetrics(Buffered):
    """A router's observer: requests, latency, attempts and fallbacks."""

    def __init__(self, recorder: Recorder, capability: str, replica: int = 0):
        super().__init__(recorder)
        self.capability = capability
        self.replica = str(replica)   # which of the capability's router replicas (0: router:<capability>)

    def observe_decision(self, d: Decision) -> None:
        cap = self.capability
        outcome = outcome_of(d.ok, d.error_kind)
        self.count("aicmo_requests", cap, method_label(cap, d.method), d.provider or "none", outcome, self.replica)
        self.observe("aicmo_request_latency_ms", d.elapsed_ms, cap, outcome, self.replica)
        previous: str | None = None
        first = True
        for a in d.attempts:
            role = "hedge" if a.hedge else ("first" if first else "fallback")
            self.count("aicmo_attempts", cap, a.provider, outcome_of(a.ok, a.error_kind), role)
            if not a.hedge:
                if previous is not None:
                    self.count("aicmo_fallbacks", cap, previous, a.provider)
                previous = a.provider
                first = False
