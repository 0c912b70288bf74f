"""Outlier ejection: providers of one capability that perform unlike their
peers leave the rotation for a while, as pure code.

This is Envoy's outlier detection, for providers instead of hosts, plus a
latency criterion in the spirit of resilience4j's slow-call rate:

- **success rate** (Envoy's `success_rate_*`): among providers with at least
  `sr_request_volume` recent calls, and only when at least
  `sr_minimum_hosts` of them have that many, a provider whose success rate
  is below `mean - sr_stdev_factor * stdev` is an outlier;
- **failure percentage** (Envoy's `failure_percentage_*`): a provider whose
  share of failed calls is at least `fp_threshold_percent` is an outlier,
  compared with a flat threshold rather than with its peers;
- **slow calls**: a call is slow when it took at least `slow_factor` times
  the peers' median latency (and at least `slow_min_ms`); a provider whose
  share of slow calls reaches `slow_rate_threshold` is an outlier. Peers,
  not a fixed duration, set the bar, so a provider as slow as its peers is
  never one, and one ten times slower always is.

Envoy's ejection algorithm, as its architecture overview ("Outlier
detection", "Ejection algorithm") describes it, and what we keep:

1. "A host is determined to be an outlier." -- by the criteria above, at each
   sweep (`sweep`), every `interval_s`; Envoy's consecutive-5xx ejection is
   the health state machine's job here (UNHEALTHY after consecutive failures).
2. "It checks to make sure the number of ejected hosts is below the allowed
   threshold (max_ejection_percent) ... If the number of ejected hosts is
   above the threshold, the host is not ejected." -- kept, with
   `always_eject_one` (Envoy's `always_eject_one_host`, v1.31) on by default:
   a capability has two to four providers, and 10% of that floors to zero.
   One departure: the last provider in rotation is never ejected (ejecting
   it would only trigger the panic mode, which ignores ejections).
3. "The number of milliseconds is equal to base_ejection_time multiplied by
   the number of times the host has been ejected in a row ... When ejection
   time reaches max_ejection_time it does not increase any more. ... If the
   host is healthy during that check, the ejection time multiplier is
   decremented." -- kept; "healthy during that check" is read strictly: the
   multiplier goes down only at a sweep that had enough calls to judge the
   provider and found it no outlier (a sweep without evidence changes nothing).
4. "An ejected host will automatically be brought back into service after
   the ejection time has been satisfied." -- kept (`Returned`); the calls it
   served before that no longer count (`EjectionState.counted_since`), as
   Envoy's per-interval counters are reset at each sweep.

Probation after a return (`probation`, on by default), in the spirit of
Envoy's slow start (`slow_start_config` of the round-robin and
least-request balancers: an endpoint's weight ramps up over
`slow_start_window`, by `aggression`, from `min_weight_percent`) but
simpler. Why: the seed's ranking sends every request to the best-ranked
provider, and a returned provider is ranked first again (its success
streak is the longest: a slow provider never fails), so without probation
it serves all live traffic until the next sweep ejects it again (about
`interval_s` of slow requests at each return: more than 1% of them, the
p99). How ours differs: there is no weight to ramp (one provider takes
everything), and a time window would end on the clock, not on evidence. A
returned provider is `on_probation`: still demoted (tried after the
providers in rotation, never dropped, ignored in panic like an ejection;
it counts as in rotation for the cap and the panic threshold) until a
sweep with enough evidence to judge it (live calls or probes, the same
criteria and volumes as the multiplier's decay) finds it no outlier:
then `Reinstated`, fully back. Found an outlier again, it is re-ejected as
without probation (the multiplier grows). Its evidence is mostly probes,
as it gets little live traffic: with probes every 60 s that takes
`probe_volume` probes, about three minutes.

Envoy's "Panic threshold": "if the percentage of available hosts in the
cluster becomes too low, Envoy will disregard health status and balance ...
amongst all hosts", default 50%. Here: when fewer than
`panic_threshold_percent` of a capability's providers are in rotation
(neither ejected nor out for their health), ejections are disregarded
(`demotion.who_to_demote`), so ejection cannot turn a partial outage into a
total one.

What ejection does to a request: an ejected provider is tried only after
every provider that is not (`demotion.demote`), never dropped: a slow provider that
still answers is better than a failed request.

Envoy compares hosts that share traffic. The seed's ranking sends every
request to the best-ranked provider, so its peers may serve nothing live;
then the latency criterion compares the providers' health-check probes
(`Source.PROBE`) instead, each source with its own kind: live calls are
never compared with probes.

Nothing here reads a clock or a random number: `now` is passed in.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec

from actors.errors import COUNTS_AGAINST_HEALTH, ErrorKind
from actors.policy.outliers.events import (
    EjectReason,
    Ejected,
    Evidence,
    OutlierEvent,
    PanicEnded,
    PanicStarted,
    ReinstateReason,
    Reinstated,
    ReturnReason,
    Returned,
    Source,
    SpareReason,
    Spared,
)

__all__ = [
    "PROBES_KEPT", "EjectReason", "Ejected", "EjectionState", "Evidence", "OutcomeWindow", "OutlierEvent", "OutlierPolicy",
    "PanicEnded", "PanicStarted", "ProviderView", "ReinstateReason", "Reinstated", "ReturnReason", "Returned",
    "Sample", "Source", "SpareReason", "Spared", "Sweep", "ejection_s", "in_panic", "max_ejected", "on_probation",
    "probe_sample", "sample_of", "sweep",
]


# Failures worse than slowness: when the cap leaves room for one ejection
# only, the provider failing calls goes first.
_REASON_RANK = {EjectReason.FAILURE_PERCENTAGE: 0, EjectReason.SUCCESS_RATE: 1, EjectReason.SLOW_CALLS: 2}


@dataclass(frozen=True)
class OutlierPolicy:
    enabled: bool = True
    interval_s: float = 10.0                  # between sweeps (Envoy's `interval`, 10s)
    window_s: float = 60.0                    # live calls older than this do not count
    probe_window_s: float = 900.0             # probes are rare: they count longer
    base_ejection_time_s: float = 30.0        # Envoy's default
    max_ejection_time_s: float = 300.0        # Envoy's default
    max_ejection_percent: float = 50.0        # Envoy: 10%, which floors to 0 of 2..4 providers
    always_eject_one: bool = True             # Envoy's always_eject_one_host
    panic_threshold_percent: float = 50.0     # Envoy's default healthy_panic_threshold
    probation: bool = True                    # a returned provider stays demoted until a judged sweep clears it
    # Success rate against the peers (Envoy's defaults). Of n values none
    # lies more than sqrt(n-1) population standard deviations below their
    # mean, so a factor of 1.9 can eject nothing among fewer than five
    # providers (Envoy's success_rate_minimum_hosts): with two to four, the
    # failure percentage and the health state machine do the work.
    sr_enabled: bool = True
    sr_minimum_hosts: int = 5
    sr_request_volume: int = 100
    sr_stdev_factor: float = 1.9
    # A flat failure percentage (Envoy: threshold 85, 5 hosts, 50 calls; 2
    # hosts here, so that a pair of providers is judged at all).
    fp_enabled: bool = True
    fp_threshold_percent: float = 85.0
    fp_minimum_hosts: int = 2
    fp_request_volume: int = 20
    # Slow calls against the peers' median latency.
    slow_enabled: bool = True
    slow_factor: float = 5.0                  # well above the 2-3x spread between vendors' APIs
    slow_min_ms: float = 20.0                 # below this no call is slow, whatever the ratio
    slow_rate_threshold: float = 0.5          # share of slow calls (resilience4j: 100% by default; 50% = the median)
    slow_request_volume: int = 20             # live calls needed to judge a provider
    slow_peer_volume: int = 5                 # live calls a peer needs to count in the baseline
    probe_volume: int = 3                     # probes needed, of the provider and of a peer
    probe_recent: int = 5                     # only the latest probes count: a slowdown shows in 3 of them


class Sample(msgspec.Struct, frozen=True, array_like=True):
    """One outcome, reduced to what outlier detection reads."""

    at: float
    ok: bool
    latency_ms: float | None
    source: Source = Source.LIVE


def sample_of(*, at: float, ok: bool, latency_ms: float | None, error_kind: ErrorKind | None = None,
              source: Source = Source.LIVE) -> Sample | None:
    """An attempt's outcome as a sample; None when it says nothing about how
    the provider performs against its peers.

    Failures count only for the kinds that count against health, less
    `unavailable` (our actor was restarting, not the provider failing). A
    failure's latency counts only for a timeout (a slow provider): a fast
    5xx would make a failing provider look quick. A hedged attempt that lost
    the race (`cancelled`) was cut short: its latency is only a lower bound."""
    if ok:
        return Sample(at, True, latency_ms, source)
    if error_kind is None or error_kind not in COUNTS_AGAINST_HEALTH or error_kind is ErrorKind.UNAVAILABLE:
        return None
    return Sample(at, False, latency_ms if error_kind is ErrorKind.TIMEOUT else None, source)


# Probes a provider actor keeps and reports (the policy reads the latest `probe_recent`, 5 by default).
PROBES_KEPT = 10


def probe_sample(at: float, ok: bool, latency_ms: float, error_kind: ErrorKind | None = None) -> Sample | None:
    """A health-check probe's outcome as a sample (a provider actor keeps them)."""
    return sample_of(at=at, ok=ok, latency_ms=latency_ms, error_kind=error_kind, source=Source.PROBE)


@dataclass
class OutcomeWindow:
    """The recent samples of one provider, live calls and probes kept apart
    so that traffic never pushes the rare probes out. Owned by one router."""

    live_size: int = 200
    probe_size: int = 50
    _live: deque[Sample] = field(default_factory=deque, repr=False)
    _probes: deque[Sample] = field(default_factory=deque, repr=False)

    def add(self, sample: Sample) -> None:
        q, size = (self._live, self.live_size) if sample.source is Source.LIVE else (self._probes, self.probe_size)
        q.append(sample)
        while len(q) > size:
            q.popleft()

    def samples(self) -> tuple[Sample, ...]:
        return (*self._live, *self._probes)


class EjectionState(msgspec.Struct, frozen=True, kw_only=True):
    """One provider's ejection record. One writer: `sweep`."""

    ejections: int = 0                  # the multiplier of base_ejection_time_s (Envoy's, decays when healthy)
    total_ejections: int = 0            # ever, for metrics
    ejected_at: float | None = None
    ejected_until: float | None = None
    reason: EjectReason | None = None   # why it is ejected now (kept while on probation: why it was)
    counted_since: float | None = None  # samples before this (its last return) do not count
    on_probation: bool = False          # returned, still demoted until a sweep that can judge it clears it
    returned_from: float | None = None  # on probation: when the ejection it served began

    def ejected(self, now: float) -> bool:
        return self.ejected_until is not None and now < self.ejected_until


class ProviderView(msgspec.Struct, frozen=True, kw_only=True):
    """What a sweep reads of one provider."""

    name: str
    samples: tuple[Sample, ...] = ()
    state: EjectionState = EjectionState()
    available: bool = True   # False: out for its health (cooling down, unreachable); counts toward panic
    # How a probe of it works (its adapter). Probes are compared only between
    # providers probed alike: an SMTP probe is a whole session (connect, TLS,
    # AUTH, NOOP, QUIT), an HTTP provider's one request, so an SMTP server as
    # quick as ever would look five times slower than a REST peer. Live calls
    # do the same job and are compared across kinds.
    probe_kind: str = ""


class Sweep(msgspec.Struct, frozen=True, kw_only=True):
    states: dict[str, EjectionState]
    events: list[OutlierEvent]
    panic: bool


def max_ejected(total: int, policy: OutlierPolicy) -> int:
    """How many of `total` providers may be ejected at once."""
    n = math.floor(total * policy.max_ejection_percent / 100)
    if policy.always_eject_one:
        n = max(n, 1)
    return max(0, min(n, total - 1))


def in_panic(total: int, out: int, policy: OutlierPolicy) -> bool:
    """Fewer than panic_threshold_percent of the providers in rotation."""
    return total > 0 and (total - out) * 100 < policy.panic_threshold_percent * total


def ejection_s(ejections: int, policy: OutlierPolicy) -> float:
    return min(policy.base_ejection_time_s * ejections, max(policy.base_ejection_time_s, policy.max_ejection_time_s))


def _max_multiplier(policy: OutlierPolicy) -> int:
    """Past this the ejection time is capped: the multiplier need not grow
    further, and a provider that recovers pays it down in as many sweeps."""
    if policy.base_ejection_time_s <= 0:
        return 1
    return max(1, math.ceil(policy.max_ejection_time_s / policy.base_ejection_time_s))


def _reinstated(st: EjectionState) -> EjectionState:
    return msgspec.structs.replace(st, on_probation=False, returned_from=None, reason=None)


def on_probation(states: Mapping[str, EjectionState]) -> frozenset[str]:
    return frozenset(n for n, st in states.items() if st.on_probation and st.ejected_until is None)


def _counted(samples: Iterable[Sample], source: Source, since: float) -> list[Sample]:
    return [s for s in samples if s.source is source and s.at >= since]


def _success_rate_outliers(live: Mapping[str, list[Sample]], policy: OutlierPolicy) -> dict[str, Evidence]:
    """Envoy's success-rate detection: mean - stdev_factor * stdev of the
    success rates of the providers with enough calls (population stdev)."""
    eligible = {n: s for n, s in live.items() if len(s) >= policy.sr_request_volume}
    if not policy.sr_enabled or len(eligible) < max(1, policy.sr_minimum_hosts):
        return {}
    rates = {n: sum(x.ok for x in s) / len(s) for n, s in eligible.items()}
    mean = statistics.fmean(rates.values())
    threshold = mean - policy.sr_stdev_factor * statistics.pstdev(rates.values())
    return {
        n: Evidence(source=Source.LIVE, requests=len(eligible[n]), failures=sum(not x.ok for x in eligible[n]),
                    success_rate=rate, threshold=threshold)
        for n, rate in rates.items() if rate < threshold
    }


def _failure_percentage_outliers(live: Mapping[str, list[Sample]], policy: OutlierPolicy) -> dict[str, Evidence]:
    eligible = {n: s for n, s in live.items() if len(s) >= policy.fp_request_volume}
    if not policy.fp_enabled or len(eligible) < max(1, policy.fp_minimum_hosts):
        return {}
    out: dict[str, Evidence] = {}
    for n, s in eligible.items():
        failures = sum(not x.ok for x in s)
        if failures * 100 >= policy.fp_threshold_percent * len(s):
            out[n] = Evidence(source=Source.LIVE, requests=len(s), failures=failures,
                              success_rate=1 - failures / len(s), threshold=policy.fp_threshold_percent)
    return out


def _latencies(samples: Iterable[Sample]) -> list[float]:
    return [s.latency_ms for s in samples if s.latency_ms is not None]


def _slow_call_verdicts(by_source: Mapping[Source, Mapping[str, list[Sample]]], judged: Collection[str],
                        policy: OutlierPolicy, probe_kinds: Mapping[str, str]) -> dict[str, tuple[bool, Evidence]]:
    """For each judged provider with enough evidence: whether it is a slow
    outlier, and the numbers. Live calls decide when the provider and at
    least one peer have enough of them; otherwise probes, likewise, of peers
    probed the same way only (`ProviderView.probe_kind`). The baseline is the
    median of the peers' medians, the provider itself left out, so that one
    slow provider does not raise its own bar."""
    if not policy.slow_enabled:
        return {}
    volumes = {Source.LIVE: (policy.slow_request_volume, policy.slow_peer_volume),
               Source.PROBE: (policy.probe_volume, policy.probe_volume)}
    out: dict[str, tuple[bool, Evidence]] = {}
    for name in judged:
        for source in (Source.LIVE, Source.PROBE):
            samples = by_source[source]
            own_volume, peer_volume = volumes[source]
            own = _latencies(samples.get(name, ()))
            if len(own) < max(1, own_volume):
                continue
            peers = [_latencies(s) for n, s in samples.items()
                     if n != name and (source is Source.LIVE or probe_kinds.get(n) == probe_kinds.get(name))]
            peer_medians = [statistics.median(p) for p in peers if len(p) >= max(1, peer_volume)]
            if not peer_medians:
                continue
            baseline = statistics.median(peer_medians)
            threshold = max(policy.slow_factor * baseline, policy.slow_min_ms)
            slow = sum(1 for x in own if x >= threshold)
            rate = slow / len(own)
            out[name] = (rate >= policy.slow_rate_threshold,
                         Evidence(source=source, requests=len(own), threshold=threshold, median_ms=statistics.median(own),
                                  peer_median_ms=baseline, slow_calls=slow, slow_call_rate=rate))
            break
    return out


def sweep(views: Sequence[ProviderView], now: float, policy: OutlierPolicy, *, was_panic: bool = False) -> Sweep:
    """One sweep over a capability's providers: return those whose time is
    served, find outliers among the rest, eject the worst within the cap.
    The only writer of `EjectionState`; returns the next states and what
    happened, as events, in the order it happened."""
    events: list[OutlierEvent] = []
    states: dict[str, EjectionState] = {}
    for v in views:
        st = v.state
        if st.ejected_until is not None and (not st.ejected(now) or not policy.enabled):
            reason = ReturnReason.TIME_SERVED if not st.ejected(now) else ReturnReason.DISABLED
            events.append(Returned(name=v.name, at=now, reason=reason, ejected_at=st.ejected_at))
            probation = reason is ReturnReason.TIME_SERVED and policy.probation
            st = msgspec.structs.replace(st, ejected_at=None, ejected_until=None, counted_since=now,
                                         reason=st.reason if probation else None, on_probation=probation,
                                         returned_from=st.ejected_at if probation else None)
        elif st.on_probation and not (policy.enabled and policy.probation):
            events.append(Reinstated(name=v.name, at=now, reason=ReinstateReason.DISABLED, ejected_at=st.returned_from))
            st = _reinstated(st)
        states[v.name] = st
    total = len(views)
    if not policy.enabled:
        return Sweep(states=states, events=events, panic=False)

    def since(name: str, window_s: float) -> float:
        counted = states[name].counted_since
        return max(now - window_s, counted if counted is not None else -math.inf)

    judged = [v.name for v in views if not states[v.name].ejected(now)]
    live = {v.name: _counted(v.samples, Source.LIVE, since(v.name, policy.window_s)) for v in views}
    # The latest probe_recent only: with probes every 15 s a 15-minute window
    # holds 60, and half of them would have to be slow before the median moved.
    probes = {v.name: _counted(v.samples, Source.PROBE, since(v.name, policy.probe_window_s))[-max(1, policy.probe_recent):]
              for v in views}
    live_judged = {n: live[n] for n in judged}

    found: dict[str, tuple[EjectReason, Evidence]] = {}
    for reason, outliers in ((EjectReason.FAILURE_PERCENTAGE, _failure_percentage_outliers(live_judged, policy)),
                             (EjectReason.SUCCESS_RATE, _success_rate_outliers(live_judged, policy))):
        for n, ev in outliers.items():
            found.setdefault(n, (reason, ev))
    # An ejected provider is no peer: its calls are those that got it ejected.
    slow = _slow_call_verdicts({Source.LIVE: live_judged, Source.PROBE: {n: probes[n] for n in judged}}, judged, policy,
                               {v.name: v.probe_kind for v in views})
    for n, (is_outlier, ev) in slow.items():
        if is_outlier:
            found.setdefault(n, (EjectReason.SLOW_CALLS, ev))

    def severity(item: tuple[str, tuple[EjectReason, Evidence]]) -> tuple:
        name, (reason, ev) = item
        badness = ev.slow_call_rate if reason is EjectReason.SLOW_CALLS else 1 - (ev.success_rate or 0.0)
        return (_REASON_RANK[reason], -(badness or 0.0), name)

    cap = max_ejected(total, policy)
    ejected_now = sum(st.ejected(now) for st in states.values())
    top = _max_multiplier(policy)
    for name, (reason, ev) in sorted(found.items(), key=severity):
        if ejected_now >= cap:
            events.append(Spared(name=name, at=now, reason=SpareReason.MAX_EJECTED, outlier=reason, evidence=ev,
                                 ejected=ejected_now, max_ejected=cap))
            continue
        st = states[name]
        multiplier = min(st.ejections + 1, top)
        until = now + ejection_s(multiplier, policy)
        states[name] = msgspec.structs.replace(st, ejections=multiplier, total_ejections=st.total_ejections + 1,
                                               ejected_at=now, ejected_until=until, reason=reason,
                                               on_probation=False, returned_from=None)
        events.append(Ejected(name=name, at=now, until=until, reason=reason, evidence=ev, ejections=multiplier))
        ejected_now += 1

    # Envoy: "If the host is healthy during that check, the ejection time
    # multiplier is decremented." Healthy = judged on enough calls, no outlier.
    evidence_of = {n for n in judged if len(live[n]) >= min(policy.fp_request_volume, policy.sr_request_volume)} | set(slow)
    # Probation ends at the same kind of sweep: judged, no outlier.
    for name in sorted(evidence_of):
        st = states[name]
        if name in found:
            continue
        if st.ejections > 0:
            st = msgspec.structs.replace(st, ejections=st.ejections - 1)
        if st.on_probation:
            cleared = slow[name][1] if name in slow else Evidence(
                source=Source.LIVE, requests=len(live[name]), failures=sum(not x.ok for x in live[name]))
            events.append(Reinstated(name=name, at=now, reason=ReinstateReason.CLEARED, ejected_at=st.returned_from,
                                     evidence=cleared))
            st = _reinstated(st)
        states[name] = st

    out = sum(1 for v in views if states[v.name].ejected(now) or not v.available)
    panic = in_panic(total, out, policy)
    if panic and not was_panic:
        events.append(PanicStarted(at=now, available=total - out, total=total))
    elif was_panic and not panic:
        events.append(PanicEnded(at=now, available=total - out, total=total))
    return Sweep(states=states, events=events, panic=panic)
