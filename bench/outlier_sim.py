"""Outlier ejection, simulated: pure, in-process, seeded; no Ray, no clock.

Three providers of one capability answering in about 50 ms; the one
configured first, which serves every request under the seed's ranking (its
success streak keeps it ahead), turns ten times slower at `slowdown_at_s`
and goes on never failing: the issue's case. Requests arrive at a
steady rate; each goes to the first provider of the router's plan (the
seed's `plan_attempts`, `by_health` ranking), whose latency is drawn from
its distribution; health is folded by the seed's `observe`; every provider
is probed alike every `probe_interval_s`; outlier sweeps run every
`interval_s` and, when ejection is on, their ejections demote the provider
(`demotion.who_to_demote` + `demotion.demote`), as the wiring will do in the router.

It measures what the issue asks: the share of requests the slow provider
serves and the p99 latency from the slowdown on, without and with
ejection, the same seed; and, as a control, three providers that stay
alike, where ejection must change nothing.
The figures are the baseline the runtime wiring is measured against.

    python -m bench.outlier_sim        # writes bench/results/outlier_sim.{json,md}
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from actors.policy.health import Health, HealthPolicy, HealthSnapshot, Outcome, observe
from actors.policy.outliers.demotion import demote, who_to_demote
from actors.policy.outliers.detection import (
    Ejected,
    EjectionState,
    OutcomeWindow,
    OutlierPolicy,
    ProviderView,
    Sample,
    Source,
    sweep,
)
from actors.policy.planning import plan_attempts
from actors.policy.ranking import Candidate, by_health

RESULTS = Path(__file__).resolve().parent / "results"


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile; q in [0, 100]."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))]


@dataclass(frozen=True)
class Scenario:
    name: str
    providers: tuple[str, ...] = ("primary", "a", "b")   # in configured order
    median_ms: float = 50.0
    slow: str = "primary"                       # the provider that slows down, and whose share is reported
    slow_factor: float = 10.0                   # how much slower it turns (1: it does not)
    slowdown_at_s: float = 60.0
    duration_s: float = 600.0
    rate_per_s: float = 10.0
    probe_interval_s: float = 15.0              # the supervisor's sample_interval_s
    sigma: float = 0.25                         # log-normal spread of latencies


TEN_X = Scenario("primary turns 10x slower")
TEN_X_LONG = Scenario("primary turns 10x slower, 30 min", duration_s=1800.0)
ALIKE = Scenario("three alike (control)", slow_factor=1.0)


@dataclass
class Run:
    scenario: str
    eject: bool
    seed: int
    probation: bool = True                        # policy.outlier.probation (when eject)
    requests: int = 0                             # from the slowdown on, like every figure below
    served: dict[str, int] = field(default_factory=dict)
    slow_share: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    ejections: int = 0
    first_ejection_after_s: float | None = None   # seconds from the slowdown to the first ejection
    slow_share_after_first: float | None = None   # from the first ejection on
    p99_after_first_ms: float | None = None
    longest_ejection_s: float = 0.0


def simulate(scenario: Scenario, *, eject: bool, seed: int = 7, policy: OutlierPolicy | None = None,
             probation: bool = True) -> Run:
    policy = dataclasses.replace(policy or OutlierPolicy(), probation=probation)
    rng = random.Random(seed)
    health_policy = HealthPolicy()
    names = list(scenario.providers)
    health = {n: HealthSnapshot() for n in names}
    windows = {n: OutcomeWindow() for n in names}
    states = {n: EjectionState() for n in names}
    panic = False
    run = Run(scenario=scenario.name, eject=eject, seed=seed, probation=probation, served={n: 0 for n in names})
    served_at: list[tuple[float, str, float]] = []

    def latency(name: str, at: float) -> float:
        slowed = name == scenario.slow and at >= scenario.slowdown_at_s
        return scenario.median_ms * (scenario.slow_factor if slowed else 1.0) * rng.lognormvariate(0.0, scenario.sigma)

    next_probe, next_sweep = 0.0, policy.interval_s
    n_requests = int(scenario.duration_s * scenario.rate_per_s)
    for i in range(n_requests):
        now = i / scenario.rate_per_s
        while next_probe <= now:
            for n in names:
                ms = latency(n, next_probe)
                health[n], _ = observe(health[n], Outcome(at=next_probe, ok=True, latency_ms=ms), health_policy)
                windows[n].add(Sample(next_probe, True, ms, Source.PROBE))
            next_probe += scenario.probe_interval_s
        while eject and next_sweep <= now:
            views = [ProviderView(name=n, samples=windows[n].samples(), state=states[n],
                                  available=health[n].state is not Health.UNHEALTHY) for n in names]
            result = sweep(views, next_sweep, policy, was_panic=panic)
            states, panic = result.states, result.panic
            for e in result.events:
                if isinstance(e, Ejected):
                    run.ejections += 1
                    run.longest_ejection_s = max(run.longest_ejection_s, e.until - e.at)
                    if run.first_ejection_after_s is None and e.at >= scenario.slowdown_at_s:
                        run.first_ejection_after_s = e.at - scenario.slowdown_at_s
            next_sweep += policy.interval_s
        candidates = [Candidate(name=n, index=i_, health=health[n]) for i_, n in enumerate(names)]
        rank = by_health
        if eject:
            r = who_to_demote(states, now, [n for n in names if health[n].state is Health.UNHEALTHY], policy)
            rank = demote(by_health, r.demoted)
        name = plan_attempts(candidates, now, rank=rank).order[0]
        ms = latency(name, now)
        health[name], _ = observe(health[name], Outcome(at=now, ok=True, latency_ms=ms), health_policy)
        windows[name].add(Sample(now, True, ms))
        if now >= scenario.slowdown_at_s:
            run.served[name] += 1
            served_at.append((now, name, ms))

    run.requests = len(served_at)
    lat = [ms for _, _, ms in served_at]
    run.p50_ms, run.p99_ms = percentile(lat, 50), percentile(lat, 99)
    run.slow_share = run.served[scenario.slow] / max(1, run.requests)
    if run.first_ejection_after_s is not None:
        first = scenario.slowdown_at_s + run.first_ejection_after_s
        after = [(n, ms) for t, n, ms in served_at if t >= first]
        run.slow_share_after_first = sum(n == scenario.slow for n, _ in after) / max(1, len(after))
        run.p99_after_first_ms = percentile([ms for _, ms in after], 99)
    return run


def _row(r: Run) -> str:
    def f(x: float | None, unit: str = "") -> str:
        return "-" if x is None else f"{x:.0f}{unit}"

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    variant = ("on" if r.probation else "on, no probation") if r.eject else "off"
    return (f"| {r.scenario} | {variant} | {r.requests} | {pct(r.slow_share)} | {f(r.p50_ms)} | "
            f"{f(r.p99_ms)} | {r.ejections} | {f(r.first_ejection_after_s, 's')} | {pct(r.slow_share_after_first)} | "
            f"{f(r.p99_after_first_ms)} | {f(r.longest_ejection_s or None, 's')} |")


def main(seed: int = 7, results: Path = RESULTS) -> Path:
    runs = [simulate(s, eject=e, seed=seed, probation=p) for s in (TEN_X, TEN_X_LONG, ALIKE)
            for e, p in ((False, True), (True, True), (True, False))]
    results.mkdir(parents=True, exist_ok=True)
    (results / "outlier_sim.json").write_text(json.dumps([asdict(r) for r in runs], indent=2))
    header = ("| scenario | ejection | requests | share served by the primary | p50 ms | p99 ms | ejections | "
              "first ejection after the slowdown | share after it | p99 after it, ms | longest ejection |\n"
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    table = results / "outlier_sim.md"
    table.write_text(
        "# Outlier ejection, simulated (pure, seeded; bench/outlier_sim.py)\n\n"
        f"Seed {seed}; {TEN_X.duration_s:.0f} s (or 30 min) at {TEN_X.rate_per_s:.0f} requests/s; three providers at "
        f"{TEN_X.median_ms:.0f} ms (log-normal, sigma {TEN_X.sigma}), the primary {TEN_X.slow_factor:.0f}x slower from "
        f"t={TEN_X.slowdown_at_s:.0f} s, never failing; probes every {TEN_X.probe_interval_s:.0f} s; ranking by_health; "
        "default OutlierPolicy ('on, no probation': policy.outlier.probation off, a returned provider fully back at "
        "once). Every figure counts the requests from the slowdown on.\n\n"
        f"{header}\n" + "\n".join(_row(r) for r in runs) + "\n")
    return table


if __name__ == "__main__":
    print(main().read_text())
