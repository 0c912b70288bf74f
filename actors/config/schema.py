"""The gateway config's schema: pydantic models, validated field by field.

Layers of policy, inner wins: the built-in defaults, the file's top-level
`policy`, a capability's `policy`, a provider's `policy` (`merge_policies`).
Reading a file and `${NAME}` references is loading.py's and env.py's.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

from actors.adapters.base import AdapterSettings
from actors.payloads import CAPABILITIES
from actors.policy.admission import AdmissionPolicy
from actors.policy.budget import RetryBudget
from actors.policy.chaos.config import ChaosConfig
from actors.policy.cost.config import BalanceConfig, CostConfig, QuotaConfig
from actors.policy.health import HealthPolicy
from actors.policy.hedging import HedgePolicy
from actors.policy.outliers.config import OutlierConfig

_NAME = r"^[a-z0-9][a-z0-9_\-]*$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# Defaults of policy settings live with the policy (actors/policy), the one
# home of each; the fields here only bound and describe them.
_HEALTH = HealthPolicy()
_BUDGET = RetryBudget()
_HEDGE = HedgePolicy()
_ADMISSION = AdmissionPolicy()


class HealthConfig(_Model):
    healthy_after: int = Field(_HEALTH.healthy_after, ge=1, description="consecutive successes before DEGRADED becomes HEALTHY")
    unhealthy_after: int = Field(_HEALTH.unhealthy_after, ge=1, description="consecutive failures before a provider is UNHEALTHY")
    cooldown_s: float = Field(_HEALTH.cooldown_s, ge=0, description="how long an UNHEALTHY provider is skipped before a trial")
    latency_alpha: float = Field(_HEALTH.latency_alpha, gt=0, le=1, description="EWMA weight of the newest latency")
    default_throttle_s: float = Field(_HEALTH.default_throttle_s, ge=0, description="throttle time after a 429 that named no reset")


class RetryBudgetConfig(_Model):
    # Why 50%: see actors/policy/budget.py, the default's home.
    percent: float = Field(_BUDGET.percent, ge=0, le=100, description="fallback attempts allowed, as a share of recent requests")
    min_per_s: float = Field(_BUDGET.min_per_s, ge=0, description="fallback attempts always allowed per second, whatever the traffic")
    ttl_s: float = Field(_BUDGET.ttl_s, gt=0, description="the window recent traffic is counted over")


class AdmissionConfig(_Model):
    # Why these: see actors/policy/admission.py, the defaults' home.
    enabled: bool = Field(_ADMISSION.enabled, description=(
        "refuse new requests (rate_limited, with a retry-after) while the router cannot keep up"))
    target_lag_ms: float = Field(_ADMISSION.target_s * 1000, gt=0, description=(
        "how late the router's event loop may run; above it for a whole interval, the router is overloaded"))
    interval_s: float = Field(_ADMISSION.interval_s, gt=0, description=(
        "how long the lag must stay above the target before requests are refused; also their retry-after"))
    min_in_flight: int = Field(_ADMISSION.min_in_flight, ge=0, description=(
        "never refuse with fewer requests than this in flight (the lag is then not the router's queue)"))


class HedgingConfig(_Model):
    enabled: bool = Field(False, description="hedge idempotent methods (enrich, verify, fetch replies, upsert)")
    quantile: float = Field(_HEDGE.quantile, gt=0, lt=1, description="hedge after the first provider's recent latency at this quantile")
    budget_percent: float = Field(10.0, ge=0, le=100, description="hedges allowed, as a share of recent requests")
    min_samples: int = Field(_HEDGE.min_samples, ge=1, description="latencies seen before hedging starts")
    min_delay_ms: float = Field(_HEDGE.min_delay_ms, ge=0, description="never hedge sooner than this")
    max_delay_factor: float = Field(_HEDGE.max_delay_factor, ge=1, description="never wait longer than this many times the median before hedging")


class RoutingConfig(_Model):
    max_attempts: int = Field(3, ge=1, description="providers tried per request, the first included")
    deadline_s: float = Field(30.0, gt=0, description="overall deadline of one request")
    max_deadline_s: float | None = Field(None, gt=0, description=(
        "the longest deadline a caller may ask for (`deadline_s`, X-Deadline-S); a longer one is cut to it. "
        "None: `deadline_s`, so callers can only shorten it"))
    attempt_timeout_s: float = Field(10.0, gt=0, description="the most one attempt may take")
    recent_operations: int = Field(10, ge=0, description="size of the router's recent-operations log")
    idempotency_window_s: float = Field(86400.0, ge=0, description="how long a repeated idempotency key returns the first result")
    ranking: str = Field("actors.policy.ranking:by_health", description="dotted path of the ranking policy")
    unreachable_backoff_s: float = Field(1.0, ge=0, description=(
        "how long a dead or restarting provider actor is skipped (a restarted one says it is back sooner)"))
    retry_rounds: int = Field(5, ge=0, description=(
        "when every provider failed transiently, rounds tried again (with jittered back-off) within the deadline "
        "and the retry budget; 0 turns them off. With an outbox the request is queued instead"))
    retry_backoff_ms: float = Field(50.0, ge=0, description="the first round's pause is up to this long (full jitter)")
    retry_backoff_max_ms: float = Field(1000.0, ge=0, description="each round's pause doubles up to this")
    wait_for_throttle: bool = Field(True, description="when every provider is throttled, wait for the earliest reset if the deadline allows")
    retry_budget: RetryBudgetConfig = RetryBudgetConfig()
    hedging: HedgingConfig = HedgingConfig()
    admission: AdmissionConfig = AdmissionConfig()
    replicas: int | Literal["auto"] = Field("auto", description=(
        "router actors of the capability, spread across nodes; callers through the client or the HTTP API use them "
        "all and resend at once to a live one when one dies. auto: 2 on a cluster of several nodes (no stall when a "
        "router dies), 1 where one machine runs everything (each router is a process of ~95 MB)"))

    @field_validator("replicas")
    @classmethod
    def _replica_count(cls, value: int | str) -> int | str:
        from actors.names import MAX_ROUTER_REPLICAS

        if isinstance(value, int) and not 1 <= value <= MAX_ROUTER_REPLICAS:
            raise ValueError(f"must be auto or from 1 to {MAX_ROUTER_REPLICAS}, not {value}")
        return value


class ProviderLimitsConfig(_Model):
    max_concurrency: int = Field(32, ge=1, description="attempts one provider actor runs at once")
    rate_limit_per_s: float | None = Field(None, gt=0, description="requests per second we send it at most (e.g. Airtable: 5)")
    rate_limit_burst: float | None = Field(None, ge=1, description="requests it may take at once (default: one second's worth)")


_HOOK_PATH = r"^[A-Za-z_][A-Za-z0-9_.]*[:.][A-Za-z_][A-Za-z0-9_]*$"


def _hook_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


class HookListConfig(_Model):
    """Callables run after each request or health change, by dotted path
    (`package.module:function`); see actors/ops/hooks.py for what they get."""

    on_success: list[str] = Field([], description="called with the Decision of each request that succeeded")
    on_failure: list[str] = Field([], description="called with the Decision of each request that failed")
    on_health_change: list[str] = Field([], description="called with a HealthChange when a provider's health state changes")

    @field_validator("on_success", "on_failure", "on_health_change", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return _hook_list(value)

    @field_validator("on_success", "on_failure", "on_health_change")
    @classmethod
    def _dotted(cls, value: list[str]) -> list[str]:
        for path in value:
            if not re.match(_HOOK_PATH, path):
                raise ValueError(f"{path!r} is not a dotted path like 'package.module:function'")
        return value


class HooksConfig(HookListConfig):
    timeout_s: float = Field(5.0, gt=0, description="the most one hook call may take; a slower one is abandoned and logged")
    queue_size: int = Field(10000, ge=1, description="hook calls waiting to run; beyond it new ones are dropped and counted")


class AuditConfig(_Model):
    enabled: bool = Field(True, description="append every routing decision to <state dir>/audit/audit-<capability>.jsonl")
    max_bytes: int = Field(10_000_000, ge=1000, description="rotate a file when it grows past this size")
    backups: int = Field(5, ge=0, description="rotated files kept (.1 is the newest)")
    flush_interval_s: float = Field(0.5, gt=0, description="how often buffered lines are written (off the request path)")


class MetricsConfig(_Model):
    enabled: bool = Field(True, description="export metrics with ray.util.metrics (Ray dashboard, Prometheus)")
    latency_buckets_ms: list[float] = Field(
        [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000], min_length=1,
        description="histogram bucket boundaries for latencies, in milliseconds")
    flush_interval_s: float = Field(1.0, gt=0, description="how often counts buffered by an actor are recorded")


class PolicyConfig(_Model):
    health: HealthConfig = HealthConfig()
    routing: RoutingConfig = RoutingConfig()
    provider: ProviderLimitsConfig = ProviderLimitsConfig()
    outlier: OutlierConfig = OutlierConfig()   # read per capability (capability_policy): peers are compared


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def merge_policies(*layers: PolicyConfig) -> PolicyConfig:
    """Inner layers win, field by field; only fields a layer set explicitly count."""
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = _merge(merged, layer.model_dump(exclude_unset=True))
    return PolicyConfig.model_validate(merged)


class EventsConfig(_Model):
    """Delivery events the provider posts to POST /v1/events/{capability}/{provider} (actors/events)."""

    verification_key: SecretStr = Field(description=(
        "SendGrid: the Event Webhook's public key as SendGrid shows it; Mailgun: the HTTP webhook signing key. "
        "Write it as an ${ENV} reference"))


class ProviderConfig(_Model):
    name: str = Field(pattern=_NAME)
    adapter: str
    settings: dict[str, Any] = {}
    policy: PolicyConfig = PolicyConfig()
    enabled: bool = True
    placement: ActorPlacement | None = Field(None, description="this provider's actor only (default: placement.providers)")
    cost: CostConfig | None = Field(None, description="what a call costs: {per_call: 0.008, currency: USD}")
    quota: QuotaConfig | None = Field(None, description="calls allowed per UTC period: {limit: 10000, per: month}")
    balance: BalanceConfig = Field(BalanceConfig(), description="reading the provider's live balance, where it has one")
    events: EventsConfig | None = Field(None, description="signed delivery events (SendGrid, Mailgun): {verification_key: \"${VAR}\"}")

    @model_validator(mode="after")
    def _events_readable(self) -> ProviderConfig:
        if self.events is None:
            return self
        from actors.events.intake import FORMATS  # loads `cryptography` only for configs that use events

        if self.adapter not in FORMATS:
            raise ValueError(f"events: delivery events are read for adapters {', '.join(sorted(FORMATS))}; "
                             f"not for {self.adapter!r}")
        make_verifier, _ = FORMATS[self.adapter]
        make_verifier(self.events.verification_key.get_secret_value())   # a bad key: a ValueError naming it
        return self

    # The adapter's validated settings (secrets as SecretStr) and the
    # environment variables settings came from; filled in by `load_config`.
    _validated: AdapterSettings | None = PrivateAttr(default=None)
    _env_refs: dict[str, str] = PrivateAttr(default_factory=dict)

    @property
    def validated_settings(self) -> AdapterSettings:
        assert self._validated is not None, "settings are validated by load_config/parse_config"
        return self._validated

    @property
    def env_refs(self) -> dict[str, str]:
        return dict(self._env_refs)

    def __repr_args__(self):  # never print raw settings: they hold secrets
        for key, value in super().__repr_args__():
            yield key, (self.masked_settings() if key == "settings" else value)

    def masked_settings(self) -> dict[str, Any]:
        """Settings fit to print: SecretStr stays masked, and so does any value
        read from an environment variable whose name says secret."""
        from actors.redaction import MASK, SECRET_NAME

        if self._validated is None:
            return {k: MASK for k in self.settings}
        out: dict[str, Any] = {}
        for key in type(self._validated).model_fields:
            var = self._env_refs.get(key)
            out[key] = MASK if var and SECRET_NAME.search(var) else getattr(self._validated, key)
        return out


class DeliveryHealthConfig(_Model):
    """Provider health from delivery events (actors/policy/delivery_health.py)."""

    enabled: bool = Field(True, description="judge providers that post delivery events (events.verification_key) on them")
    window_s: float = Field(120.0, gt=0, description="outcomes of this many seconds count")
    min_outcomes: int = Field(10, ge=1, description="final outcomes needed before a provider is judged")
    degrade_ratio: float = Field(0.1, gt=0, le=1, description="share of provider drops that degrades it")
    eject_ratio: float = Field(0.3, gt=0, le=1, description="share of provider drops that ejects it (tried last)")
    eject_s: float = Field(300.0, gt=0, description="how long an ejection lasts before fresh outcomes judge it again")
    interval_s: float = Field(2.0, gt=0, description="how often the router reads the events")


class DropFallbackConfig(_Model):
    enabled: bool = Field(False, description="re-send a message the provider dropped for its own reasons through the next provider, once, with the same Message-ID")
    window_s: float = Field(3600.0, gt=0, description="drops older than this are not re-sent")


class DeliveryConfig(_Model):
    health: DeliveryHealthConfig = DeliveryHealthConfig()
    suppress_hard_bounces: bool = Field(True, description="a hard bounce puts the address on the suppression list; later sends to it are refused (kind suppressed)")
    drop_fallback: DropFallbackConfig = DropFallbackConfig()


class CapabilityConfig(_Model):
    providers: list[ProviderConfig] = Field(min_length=1)
    delivery: DeliveryConfig = Field(DeliveryConfig(), description="what delivery events (providers' events:) do: health, drop fallback")
    policy: PolicyConfig = PolicyConfig()
    hooks: HookListConfig = Field(HookListConfig(), description="run in addition to the top-level hooks, for this capability only")

    @field_validator("providers")
    @classmethod
    def _unique_names(cls, providers: list[ProviderConfig]) -> list[ProviderConfig]:
        seen: set[str] = set()
        for p in providers:
            if p.name in seen:
                raise ValueError(f"provider name {p.name!r} is used twice")
            seen.add(p.name)
        return providers


class SupervisorConfig(_Model):
    check_interval_s: float = Field(60.0, ge=0, description="periodic self-check interval; 0 turns it off")
    drain_interval_s: float = Field(2.0, ge=0, description="how often the outbox is checked for requests to deliver; 0 turns draining off")
    drain_rate_per_s: float = Field(20.0, gt=0, description="the most outbox requests delivered per second per capability")
    check_jitter_s: float = Field(5.0, ge=0, description="random delay added to each interval so checks do not align")
    probe_timeout_s: float = Field(5.0, gt=0, description="the most one probe may take")
    probe_all_nodes: bool = Field(True, description=(
        "probe every provider from every node of the Ray cluster too (a reachability matrix), "
        "not only from the node its actor runs on"))
    node_probe_timeout_s: float = Field(30.0, gt=0, description=(
        "the most a node's probe task may take, starting a worker included; a node that takes longer is reported, "
        "not counted against any provider"))
    sample_interval_s: float = Field(15.0, ge=0, description=(
        "how often provider status is sampled for trends (throttled most of the hour, consistently slow) "
        "and metrics; 0 turns sampling off"))


class StateConfig(_Model):
    url: str | None = Field(None, description=(
        "where durable state lives (idempotency keys, delivery journal, outbox): a directory or sqlite:///file.db "
        "(one machine, or nodes sharing that directory), or postgresql://user@host:port/db (every node; the password "
        "as ${VAR} in the URL, or libpq's PGPASSWORD / PGPASSFILE on each node); default $AICMO_STATE_DIR, else "
        "~/.local/state/aicmo-gateway; a directory gets one subfolder per namespace"))
    retention_s: float = Field(7 * 86400.0, gt=0, description=(
        "journal entries and outbox items that ended (delivered, failed, dropped) are deleted after this long; "
        "entries still in doubt are kept until settled"))
    prune_interval_s: float = Field(600.0, ge=0, description="how often the supervisor prunes; 0 turns pruning off")
    pool_size: int = Field(4, ge=1, le=50, description=(
        "PostgreSQL connections per actor process (keep actors x pool_size under the server's max_connections)"))

    @field_validator("url")
    @classmethod
    def _known_store(cls, url: str | None) -> str | None:
        from actors.durable.location import parse_state_url
        from actors.errors import InvalidStateUrl

        if url is not None:
            try:
                parse_state_url(url)
            except InvalidStateUrl as exc:  # the message never quotes the URL: it may hold a password
                raise ValueError(str(exc)) from None
        return url


class ActorPlacement(_Model):
    """Where Ray may run an actor: the custom resources it needs (a node
    started with `ray start --resources '{"gateway": 100}'` takes actors that
    ask for a little `gateway`), and what it reserves."""

    resources: dict[str, float] = Field({}, description="custom resources each actor needs, e.g. {gateway: 0.01}")
    num_cpus: float = Field(0.0, ge=0, description="CPUs reserved per actor (0: they mostly wait on the network)")
    memory_mb: int | None = Field(None, ge=1, description="memory reserved per actor, in MiB")
    labels: dict[str, str] = Field({}, description=(
        "node labels each actor needs (Ray's label_selector), e.g. {pool: gateway} for workers started with "
        "`ray start --labels pool=gateway`; values may be `!v`, `in(a,b)`, `!in(a,b)`"))

    def ray_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.resources:
            options["resources"] = dict(self.resources)
        if self.labels:
            options["label_selector"] = dict(self.labels)
        if self.memory_mb:
            options["memory"] = self.memory_mb * 1024 * 1024
        return options


class PlacementConfig(_Model):
    avoid_head: Literal["auto", "always", "never"] = Field("auto", description=(
        "keep the gateway's actors off the Ray head node, whose loss they would not survive: auto (when a worker "
        "node can host them), always (or `up` fails), never"))
    providers: ActorPlacement = ActorPlacement()
    routers: ActorPlacement = ActorPlacement()
    supervisor: ActorPlacement = ActorPlacement()


MIN_API_KEY_LENGTH = 16


class HttpConfig(_Model):
    """The HTTP API on Ray Serve (actors/http): deployed by `up` when enabled."""

    enabled: bool = Field(False, description="deploy the HTTP API (POST /v1/{capability}/{method}) on Ray Serve")
    host: str = Field("127.0.0.1", description="address Serve's HTTP proxy listens on (0.0.0.0: every interface)")
    port: int = Field(8000, ge=1, le=65535, description="port Serve's HTTP proxy listens on")
    behind_tls_proxy: bool = Field(False, description=(
        "a TLS-terminating proxy (nginx, Caddy, a cloud load balancer) is in front of the API: Serve speaks plain "
        "HTTP, so on any address but loopback bearer keys cross the network in clear without one "
        "(up, doctor and self-check warn unless this is set)"))
    api_keys: list[SecretStr] = Field([], description=(
        "bearer keys accepted in `Authorization: Bearer KEY`; write them as ${ENV} references, e.g. ${AICMO_API_KEY}"))
    num_replicas: int = Field(1, ge=1, description="Serve replicas of the ingress")
    max_ongoing_requests: int = Field(256, ge=1, description="requests one replica handles at once (they wait on routers)")
    direct_reads: bool = Field(False, description=(
        "send idempotent calls (verify, enrich, fetch replies, upsert) straight to the provider the router ranks "
        "first, one Ray hop instead of two; they then skip the router's audit log and request metrics"))

    @model_validator(mode="after")
    def _keys_when_enabled(self) -> HttpConfig:
        if not self.enabled:
            return self
        if not self.api_keys:
            raise ValueError("http.enabled needs at least one key in http.api_keys (e.g. \"${AICMO_API_KEY}\")")
        for i, key in enumerate(self.api_keys):
            value = key.get_secret_value()
            if len(value) < MIN_API_KEY_LENGTH:
                raise ValueError(f"http.api_keys[{i}] is {'empty' if not value else 'too short'}: an API key needs "
                                 f"at least {MIN_API_KEY_LENGTH} characters (is the environment variable it reads set?)")
        return self


class TracesConfig(_Model):
    """OpenTelemetry traces (actors/telemetry): one trace per request, exported over OTLP/HTTP."""

    endpoint: str | None = Field(None, description=(
        "the collector's OTLP/HTTP traces URL, e.g. http://HOST:4318/v1/traces (Jaeger, Tempo, an OpenTelemetry "
        "Collector); default $OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, else $OTEL_EXPORTER_OTLP_ENDPOINT + /v1/traces, "
        "else traces are off"))
    sampling_ratio: float = Field(1.0, ge=0, le=1, description=(
        "share of requests traced (a request whose caller sent a traceparent follows the caller's choice)"))
    headers: dict[str, SecretStr] = Field({}, description=(
        "headers sent with each export, e.g. {Authorization: \"Bearer ${TEMPO_TOKEN}\"}; default "
        "$OTEL_EXPORTER_OTLP_TRACES_HEADERS or $OTEL_EXPORTER_OTLP_HEADERS (k=v,k2=v2)"))
    export_timeout_s: float = Field(2.0, gt=0, le=60, description=(
        "the most one batch export may take; spans a dead collector cannot take are dropped, requests never wait"))

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not re.match(r"^https?://[^/\s]+", url):
            raise ValueError(f"telemetry.traces.endpoint must be an http:// or https:// URL (OTLP over HTTP), "
                             f"not {url[:80]!r}")
        return url


class TelemetryConfig(_Model):
    traces: TracesConfig = Field(TracesConfig(), description="OpenTelemetry traces; off unless an endpoint is set")


class GatewayConfig(_Model):
    namespace: str = Field("aicmo", pattern=_NAME)
    dry_run: bool = False
    state: StateConfig = StateConfig()
    policy: PolicyConfig = PolicyConfig()
    supervisor: SupervisorConfig = SupervisorConfig()
    hooks: HooksConfig = HooksConfig()
    audit: AuditConfig = AuditConfig()
    metrics: MetricsConfig = MetricsConfig()
    placement: PlacementConfig = Field(PlacementConfig(), description="where Ray runs the gateway's actors")
    http: HttpConfig = Field(HttpConfig(), description="the HTTP API on Ray Serve")
    chaos: ChaosConfig = Field(ChaosConfig(), description="live fault injection (`aicmo-gateway chaos inject`)")
    telemetry: TelemetryConfig = Field(TelemetryConfig(), description="OpenTelemetry traces (off by default)")
    capabilities: dict[str, CapabilityConfig] = Field(min_length=1)

    @field_validator("capabilities")
    @classmethod
    def _known_capabilities(cls, caps: dict[str, CapabilityConfig]) -> dict[str, CapabilityConfig]:
        unknown = [name for name in caps if name not in CAPABILITIES]
        if unknown:
            raise ValueError(f"unknown capabilities {unknown}; known: {', '.join(CAPABILITIES)}")
        return caps

    def provider_policy(self, capability: str, provider: ProviderConfig) -> PolicyConfig:
        return merge_policies(self.policy, self.capabilities[capability].policy, provider.policy)

    def capability_policy(self, capability: str) -> PolicyConfig:
        return merge_policies(self.policy, self.capabilities[capability].policy)
