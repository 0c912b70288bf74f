"""From probes and status to things an operator can act on, as pure code.

Each recommendation names the capability and provider, the evidence, and a
concrete fix: the config path of the setting to check and, where the value
came from the environment, the variable's name.

The inputs are snapshots the supervisor gathers: each provider's facts
(from its spec), status and probe (`for_provider`); a capability's providers
together (`for_capability`); trends over the last hour of sampled status
(`ProviderTrend`, `for_trends`); the reachability of each provider from each
node of the cluster (`NodeReach`, `for_reachability`); and what the routers
and providers say of their hooks and audit log (`for_ops`); and how the
state store answers (`for_store`).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from actors.durable.store import StoreHealth
from actors.errors import ErrorKind
from actors.messages import ProbeResult, ProviderStatus, Recommendation
from actors.policy.health import Health

if TYPE_CHECKING:
    from actors.specs import ProviderSpec


class ProviderFacts(msgspec.Struct, frozen=True, kw_only=True):
    """What the supervisor knows of a provider from its spec."""

    name: str
    capability: str
    adapter: str
    config_path: str
    env_refs: dict[str, str]
    auth_settings: list[str]
    delivers: bool
    has_probe: bool


def facts_of(p: ProviderSpec) -> ProviderFacts:
    """A provider's facts, from its spec."""
    return ProviderFacts(name=p.name, capability=p.capability, adapter=p.adapter, config_path=p.config_path,
                         env_refs=p.env_refs, auth_settings=p.auth_settings, delivers=p.delivers, has_probe=p.has_probe)


def _setting_ref(facts: ProviderFacts, setting: str) -> str:
    ref = f"{facts.config_path}.settings.{setting}"
    var = facts.env_refs.get(setting)
    return f"{ref} (from environment variable {var})" if var else ref


def _redeploy() -> str:
    return "then redeploy with `aicmo-gateway up --config <file>`"


def for_provider(facts: ProviderFacts, status: ProviderStatus | None, probe: ProbeResult | None, now: float) -> list[Recommendation]:
    out: list[Recommendation] = []

    def add(severity: str, problem: str, evidence: str, fix: str) -> None:
        out.append(Recommendation(severity=severity, capability=facts.capability, provider=facts.name,
                                  problem=problem, evidence=evidence, fix=fix))

    failed_kind = probe.error_kind if probe is not None and not probe.ok else None
    last_kind = status.last_error_kind if status is not None else None
    error_text = (probe.error if failed_kind else None) or (status.last_error if status else None) or ""

    if ErrorKind.AUTH in (failed_kind, last_kind):
        settings = facts.auth_settings or ["<credentials>"]
        refs = " and ".join(_setting_ref(facts, s) for s in settings)
        add("critical", f"{facts.name} rejects our credentials", error_text,
            f"check {refs}: the value may be wrong, expired or lack a permission; {_redeploy()}")
    elif failed_kind in (ErrorKind.TRANSIENT, ErrorKind.TIMEOUT, ErrorKind.UNAVAILABLE, ErrorKind.CRASHED, ErrorKind.MALFORMED_RESPONSE):
        add("critical" if failed_kind is not ErrorKind.MALFORMED_RESPONSE else "warning",
            f"{facts.name} does not answer its health check ({failed_kind})", error_text,
            f"check that the service is up and that {facts.config_path}.settings (host/port or base_url) points at it; "
            f"`aicmo-gateway status` shows whether live traffic fails too")
    elif failed_kind is ErrorKind.RATE_LIMITED or (status and status.throttled_until and status.throttled_until > now):
        until = status.throttled_until if status and status.throttled_until else now
        add("warning", f"{facts.name} is rate-limiting us", f"throttled for {max(0.0, until - now):.0f}s more; {error_text}",
            f"raise the provider's limit on its side, lower this gateway's send rate, or add another provider under capabilities.{facts.capability}.providers")

    if status is not None and status.health is Health.UNHEALTHY and failed_kind is None and last_kind is not ErrorKind.AUTH:
        add("warning", f"{facts.name} is unhealthy from live traffic although its probe passes",
            f"{status.consecutive_failures} consecutive failures; last: {status.last_error}",
            "the failures are in requests, not connectivity: read `aicmo-gateway status` recent operations for the error")
    if status is not None:
        for setting in status.cleartext:
            fix = ("set tls_mode to starttls (port 587) or implicit (465)" if setting == "tls_mode"
                   else f"use an https:// address in {_setting_ref(facts, setting)}")
            add("warning", f"{facts.name} sends credentials unencrypted", f"settings.{setting} is not encrypted",
                f"{fix}; {_redeploy()}")
        for warning in status.warnings:
            if "TLS" in warning:
                add("warning", f"{facts.name} runs without TLS verification", warning,
                    f"remove verify_tls: false from {facts.config_path}.settings, or give the server's CA (ca_file)")
            elif not status.reachable:
                add("critical", f"the actor of {facts.name} does not answer", warning,
                    "Ray restarts it on its own; if it persists, check `ray status` and the actor's logs in the Ray dashboard")
    if not facts.has_probe:
        add("info", f"{facts.name} has no health check endpoint",
            f"the {facts.adapter} API offers no free call to test it", "its health is known from live traffic only")
    return out


def for_capability(capability: str, facts: Sequence[ProviderFacts], usable: Sequence[str],
                   statuses: dict[str, ProviderStatus], trends: dict[str, ProviderTrend] | None = None) -> list[Recommendation]:
    out: list[Recommendation] = []
    delivering = [f for f in facts if f.delivers]
    usable_delivering = [f.name for f in delivering if f.name in usable]
    if not usable_delivering:
        fallback = [f.name for f in facts if not f.delivers and f.name in usable]
        note = f" (only {', '.join(fallback)} answers, and it delivers nothing)" if fallback else ""
        out.append(Recommendation(
            severity="critical", capability=capability, provider=None,
            problem=f"{capability} has no usable provider{note}",
            evidence=f"no provider that delivers passed its check: {', '.join(f.name for f in delivering) or 'none configured'}",
            fix=f"fix the provider problems listed for {capability}, or add a working provider under capabilities.{capability}.providers"))
    elif len(usable_delivering) == 1 and len(delivering) >= 1:
        out.append(Recommendation(
            severity="warning", capability=capability, provider=usable_delivering[0],
            problem=f"{capability} depends on a single provider",
            evidence=f"only {usable_delivering[0]} is usable of {len(delivering)} that deliver",
            fix=f"add or repair a second provider under capabilities.{capability}.providers so a failure can fall back"))

    latencies = {n: s.latency_ewma_ms for n, s in statuses.items() if s.latency_ewma_ms is not None and s.total_calls >= 5}
    if len(latencies) >= 2:
        for name, latency in latencies.items():
            if trends and _consistently_slower(trends.get(name)):
                continue  # for_trends says it with the hour's evidence
            peers = [v for n, v in latencies.items() if n != name]
            typical = statistics.median(peers)
            if typical > 0 and latency > 3 * typical and latency - typical > 50:
                out.append(Recommendation(
                    severity="info", capability=capability, provider=name,
                    problem=f"{name} is much slower than its peers",
                    evidence=f"{latency:.0f} ms on average vs {typical:.0f} ms for the others",
                    fix=f"list it later under capabilities.{capability}.providers, or check its region/base_url"))
    return out


# --- trends over the last hour ------------------------------------------------
# Thresholds of "most of the last hour" and "consistently": a provider must
# have been watched this long before a trend is reported.
MIN_OBSERVED_S = 600.0
THROTTLED_SHARE = 0.5
SLOWER_SHARE = 0.8
MIN_COMPARABLE_SAMPLES = 4
SLOWER_FACTOR = 3.0
SLOWER_MARGIN_MS = 50.0


class ProviderTrend(msgspec.Struct, frozen=True, kw_only=True):
    """A provider's last hour, summarized from sampled status (actors/ops/history.py)."""

    observed_s: float                # how long it has been watched, at most the window
    throttled_s: float               # of which it was throttled (union of throttled intervals)
    samples: int
    comparable_samples: int = 0      # samples where at least one peer had a latency to compare with
    slower_samples: int = 0          # of which it was SLOWER_FACTOR times slower than its peers' median
    latency_ms: float | None = None  # its median EWMA latency over the samples
    peers_latency_ms: float | None = None  # its peers' median


def slower_than_peers(latency_ms: float, peers_ms: Sequence[float]) -> bool:
    if not peers_ms:
        return False
    typical = statistics.median(peers_ms)
    return typical > 0 and latency_ms > SLOWER_FACTOR * typical and latency_ms - typical > SLOWER_MARGIN_MS


def _consistently_slower(trend: ProviderTrend | None) -> bool:
    return (trend is not None and trend.observed_s >= MIN_OBSERVED_S / 2
            and trend.comparable_samples >= MIN_COMPARABLE_SAMPLES
            and trend.slower_samples >= SLOWER_SHARE * trend.comparable_samples)


def for_trends(facts: Sequence[ProviderFacts], trends: dict[str, ProviderTrend]) -> list[Recommendation]:
    out: list[Recommendation] = []
    for f in facts:
        t = trends.get(f.name)
        if t is None or t.observed_s < MIN_OBSERVED_S / 2:
            continue
        minutes = t.observed_s / 60
        if t.observed_s >= MIN_OBSERVED_S and t.throttled_s > THROTTLED_SHARE * t.observed_s:
            out.append(Recommendation(
                severity="warning", capability=f.capability, provider=f.name,
                problem=f"{f.name} has been rate-limiting us for most of the last {minutes:.0f} minutes",
                evidence=f"throttled for {t.throttled_s / 60:.0f} of the last {minutes:.0f} minutes ({t.samples} samples)",
                fix=f"raise the limit of the plan or API key with {f.name}; or pace requests under its limit with "
                    f"{f.config_path}.policy.provider.rate_limit_per_s; or add another provider under "
                    f"capabilities.{f.capability}.providers to take the overflow"))
        if _consistently_slower(t) and f.delivers:
            out.append(Recommendation(
                severity="warning", capability=f.capability, provider=f.name,
                problem=f"{f.name} is consistently slower than its peers",
                evidence=f"slower in {t.slower_samples} of {t.comparable_samples} samples over {minutes:.0f} minutes: "
                         f"{(t.latency_ms or 0):.0f} ms typical vs {(t.peers_latency_ms or 0):.0f} ms for the others",
                fix=f"list it after its faster peers under capabilities.{f.capability}.providers (configured order), "
                    f"or check its region or base_url in {f.config_path}.settings"))
    return out


# --- reachability from every node -----------------------------------------------
NETWORK_KINDS = (ErrorKind.TRANSIENT, ErrorKind.TIMEOUT, ErrorKind.UNAVAILABLE)


class NodeReach(msgspec.Struct, frozen=True, kw_only=True):
    """One provider's probe from one node of the cluster."""

    node: str                        # how to name the node to an operator: address and id prefix
    node_id: str
    ok: bool
    error_kind: ErrorKind | None = None
    error: str | None = None
    hosts_actor: bool = False        # the provider's actor runs on this node: its traffic goes from here


def for_reachability(facts: ProviderFacts, reach: Sequence[NodeReach]) -> list[Recommendation]:
    """A provider that some nodes reach and others do not: the problem is
    the failing node's path to it, not the provider."""
    passing = [r for r in reach if r.ok]
    failing = [r for r in reach if not r.ok]
    if not passing or not failing:
        return []  # down from everywhere (for_provider says so), or fine everywhere
    out: list[Recommendation] = []
    for r in failing:
        network = r.error_kind in NETWORK_KINDS
        verb = "cannot reach" if network else "fails its check against"
        if r.hosts_actor:
            severity, consequence = "critical", (
                f"its provider actor runs on {r.node}, so its requests fail too; until the node is fixed, "
                f"remove the node from the cluster and Ray restarts the actor on another")
        else:
            severity, consequence = "warning", (
                f"nothing runs there now, but if Ray restarts the provider actor on {r.node} its requests will fail")
        out.append(Recommendation(
            severity=severity, capability=facts.capability, provider=facts.name,
            problem=f"node {r.node} {verb} {facts.name}",
            evidence=f"probe from {r.node}: {r.error_kind}: {r.error or ''}; it passes from "
                     f"{', '.join(p.node for p in passing)}",
            fix=(f"check the network path from node {r.node} to the address in {facts.config_path}.settings: "
                 f"firewall and security groups, DNS, routes, and proxy variables (HTTPS_PROXY, HTTP_PROXY, NO_PROXY) "
                 f"in the environment Ray was started with on that node; {consequence}") if network else
                (f"compare node {r.node}'s environment with the others (clock, CA certificates, proxy variables); "
                 f"{consequence}")))
    return out


# --- hooks and the audit log -------------------------------------------------------
def for_ops(capability: str, actor: str, report: dict[str, Any]) -> list[Recommendation]:
    """From an actor's `ops_report()`: hooks that cannot load or keep failing,
    an audit log that cannot be written."""
    out: list[Recommendation] = []
    for provider, verdict in (report.get("delivery") or {}).items():
        ejected = verdict.get("verdict") == "ejected"
        out.append(Recommendation(
            severity="warning", capability=capability, provider=provider,
            problem=f"{provider} {'is ejected' if ejected else 'is degraded'}: it drops mail it accepted",
            evidence=str(verdict.get("evidence")),
            fix=f"look at {provider}'s own dashboard (account under review, suppression or sending limits, IP "
                "reputation); the gateway tries it after the others meanwhile" + (
                "" if ejected else " once it passes the ejection threshold")
                + f"; capabilities.{capability}.delivery.drop_fallback re-sends what it drops"))
    hooks = report.get("hooks") or {}
    for path, error in (hooks.get("load_errors") or {}).items():
        out.append(Recommendation(
            severity="warning", capability=capability, provider=None, problem=f"hook {path} cannot be loaded in {actor}",
            evidence=error, fix=f"install the package that provides {path} on every node (or in the job's runtime_env), "
                                 f"or fix the dotted path under hooks; {_redeploy()}"))
    for path, stats in (hooks.get("hooks") or {}).items():
        if stats.get("failures"):
            out.append(Recommendation(
                severity="warning", capability=capability, provider=None,
                problem=f"hook {path} fails in {actor}",
                evidence=f"{stats['failures']} of {stats['calls']} calls failed; last: {stats.get('last_error')}",
                fix=f"fix the hook (requests are not affected: hooks run after them); its traceback is in {actor}'s log "
                    f"in the Ray dashboard"))
    if hooks.get("dropped"):
        out.append(Recommendation(
            severity="warning", capability=capability, provider=None, problem=f"hook calls are being dropped in {actor}",
            evidence=f"{hooks['dropped']} calls dropped: the hooks are slower than the traffic",
            fix="make the hooks faster (hand work to a queue), or raise hooks.queue_size / lower hooks.timeout_s"))
    audit = report.get("audit") or {}
    if audit.get("last_error"):
        out.append(Recommendation(
            severity="critical", capability=capability, provider=None, problem=f"the audit log of {actor} cannot be written",
            evidence=f"{audit.get('path')}: {audit['last_error']}; {audit.get('dropped', 0)} lines dropped",
            fix="free space or fix the permissions of the state directory (state.url, or $AICMO_STATE_DIR) on that node"))
    out += for_replicas(capability, report.get("replicas") or [])
    return out


def for_replicas(capability: str, replicas: list[dict[str, Any]]) -> list[Recommendation]:
    """Router replicas (as replica 0 reports them): one refusing requests
    because it cannot keep up (actors/policy/admission.py); a capability down
    to one live replica, or none besides replica 0, has lost what replicas are for."""
    out = [Recommendation(
        severity="critical", capability=capability, provider=None,
        problem=f"{r['name']} is overloaded: it refuses new requests (rate_limited, with a retry-after)",
        evidence=f"{r.get('in_flight', 0)} requests in flight, its event loop running late past "
                 f"policy.routing.admission.target_lag_ms; {r.get('refused', 0)} refused since it started",
        fix="callers get rate_limited and should send again after the retry-after (same idempotency key); for "
            "more capacity raise policy.routing.replicas of the capability and give the cluster more nodes (each "
            "replica is a process on its own core); look for a slow hook or a busy node in the Ray dashboard")
        for r in replicas if r.get("alive", True) and r.get("overloaded")]
    down = [r for r in replicas if not r.get("alive", True)]
    if len(replicas) < 2 or len(replicas) - len(down) > 1:
        return out
    names = ", ".join(f"{r['name']} ({r.get('error') or 'no answer'})" for r in down)
    return out + [Recommendation(
        severity="warning", capability=capability, provider=None,
        problem=f"{capability} is down to {len(replicas) - len(down)} of {len(replicas)} router replicas",
        evidence=f"not answering: {names}",
        fix="Ray restarts a dead replica by itself within seconds; if it stays down, look at its log in the Ray "
            "dashboard (Actors, the name above) and at its node, then run `aicmo-gateway up` again to recreate it")]


def for_store(store: StoreHealth, now: float) -> list[Recommendation]:
    """The state store not answering: every keyed send waits for it, then
    fails as `store_unavailable` (nothing is sent without it)."""
    if store.ok:
        return []
    since = f" for {now - store.failing_since:.0f}s" if store.failing_since is not None else ""
    evidence = f"{store.url} did not answer{since}: {store.last_error or 'no answer'}"
    if store.kind == "postgresql":
        fix = (f"check that the PostgreSQL server in state.url ({store.url}) is running and that every node reaches "
               "it (`pg_isready -d '<state.url>'` from each node); that the role and database exist; and that the "
               "password is right (the ${VAR} in state.url, or PGPASSWORD / PGPASSFILE on each node). Keyed sends "
               "wait up to their deadline, then fail with store_unavailable and send nothing: retry them with the "
               "same idempotency key once the server is back")
    else:
        fix = (f"check that the state directory of {store.url} exists, is writable by the Ray workers' user and has "
               "free disk space (`aicmo-gateway doctor` checks it); a lock held long means another process holds "
               "the SQLite file (a backup, a checkpoint): keep state.url on a local disk")
    return [Recommendation(severity="critical", capability="*", provider=None,
                           problem="the state store (idempotency keys, delivery journal, outbox) does not answer",
                           evidence=evidence, fix=fix)]
