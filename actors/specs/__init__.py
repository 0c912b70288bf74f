"""What each actor is built from: frozen specs derived from a validated config.

Config objects stay at the edge (the driver); actors receive these Structs.
A spec's `digest` tells `up` whether a running actor already matches.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec
from pydantic import SecretStr

from actors.policy.chaos.faults import ChaosPolicy
from actors.policy.cost.quota import Price, Quota
from actors.policy.delivery_health import DeliveryHealthPolicy
from actors.policy.drop_fallback import DropFallbackPolicy
from actors.policy.health import HealthPolicy
from actors.policy.outliers.detection import OutlierPolicy
from actors.redaction import MASK, SECRET_NAME

from actors.names import SUPERVISOR_NAME, provider_name, router_name  # noqa: F401 - re-exported for the actors

if TYPE_CHECKING:
    from actors.config import GatewayConfig, PolicyConfig


def _default(model: str, name: str) -> Any:
    """A spec field's default: the config field's (`model`, a class of
    actors.config, by name), its one home. Defaults on specs only let an
    older spec, without the field, still decode, so the config is read then,
    not when this module loads: an actor receives whole specs and never
    loads the config's pydantic models (about 2 MB of every actor's memory)."""
    return msgspec.field(default_factory=functools.partial(_config_default, model, name))


def _config_default(model: str, name: str) -> Any:
    import actors.config

    return getattr(actors.config, model).model_fields[name].get_default(call_default_factory=True)


class StateSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Where the gateway's durable state lives, as every actor opens it."""

    url: str                         # a directory, sqlite:///file, or postgresql://... without a password
    namespace: str                   # the gateway's: several can share one database
    password: SecretStr | None = None  # PostgreSQL's, when the URL held one (from ${VAR})
    retention_s: float = _default("StateConfig", "retention_s")   # ended journal entries and outbox items are kept this long
    prune_interval_s: float = _default("StateConfig", "prune_interval_s")
    pool_size: int = _default("StateConfig", "pool_size")          # PostgreSQL connections per actor process

    @property
    def display(self) -> str:
        return self.url


def open_spec_store(state: StateSpec) -> Any:
    """The store an actor uses (opened lazily: the first await connects)."""
    from actors.durable import open_store

    password = state.password.get_secret_value() if state.password is not None else None
    return open_store(state.url, state.namespace, password=password, pool_size=state.pool_size)


class RetryBudgetSpec(msgspec.Struct, frozen=True, kw_only=True):
    percent: float
    min_per_s: float
    ttl_s: float


class HedgingSpec(msgspec.Struct, frozen=True, kw_only=True):
    enabled: bool
    quantile: float
    budget_percent: float
    min_samples: int
    min_delay_ms: float
    max_delay_factor: float = _default("HedgingConfig", "max_delay_factor")


class AdmissionSpec(msgspec.Struct, frozen=True, kw_only=True):
    enabled: bool = _default("AdmissionConfig", "enabled")
    target_lag_ms: float = _default("AdmissionConfig", "target_lag_ms")
    interval_s: float = _default("AdmissionConfig", "interval_s")
    min_in_flight: int = _default("AdmissionConfig", "min_in_flight")


class RoutingSpec(msgspec.Struct, frozen=True, kw_only=True):
    max_attempts: int
    deadline_s: float
    attempt_timeout_s: float
    recent_operations: int
    idempotency_window_s: float
    ranking: str
    unreachable_backoff_s: float
    wait_for_throttle: bool
    retry_rounds: int = _default("RoutingConfig", "retry_rounds")
    retry_backoff_ms: float = _default("RoutingConfig", "retry_backoff_ms")
    retry_backoff_max_ms: float = _default("RoutingConfig", "retry_backoff_max_ms")
    max_deadline_s: float | None = _default("RoutingConfig", "max_deadline_s")
    retry_budget: RetryBudgetSpec
    hedging: HedgingSpec
    admission: AdmissionSpec = msgspec.field(default_factory=AdmissionSpec)
    replicas: int | str = "auto"      # router replicas: a count, or "auto" (actors/deploy/replicas.py)


class HooksSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Dotted paths of the hooks an actor runs (actors/ops/hooks.py)."""

    on_success: list[str] = []
    on_failure: list[str] = []
    on_health_change: list[str] = []
    timeout_s: float = _default("HooksConfig", "timeout_s")
    queue_size: int = _default("HooksConfig", "queue_size")


class AuditSpec(msgspec.Struct, frozen=True, kw_only=True):
    enabled: bool = False
    max_bytes: int = 10_000_000
    backups: int = 5
    flush_interval_s: float = 0.5


class MetricsSpec(msgspec.Struct, frozen=True, kw_only=True):
    enabled: bool = False
    latency_buckets_ms: list[float] = _default("MetricsConfig", "latency_buckets_ms")
    flush_interval_s: float = _default("MetricsConfig", "flush_interval_s")


class TracesSpec(msgspec.Struct, frozen=True, kw_only=True):
    """Where an actor exports its spans (actors/telemetry); None on a spec: traces off."""

    endpoint: str
    sampling_ratio: float = 1.0
    headers: dict[str, SecretStr] = {}
    export_timeout_s: float = 2.0


def traces_spec(cfg: GatewayConfig, env: dict[str, str] | None = None) -> TracesSpec | None:
    """telemetry.traces, or the standard OTEL_EXPORTER_OTLP_* variables of
    the driver that builds the spec (`up`): actors run where those are not set."""
    env = os.environ if env is None else env
    t = cfg.telemetry.traces
    endpoint = t.endpoint or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or None
    if endpoint is None and env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        endpoint = env["OTEL_EXPORTER_OTLP_ENDPOINT"].rstrip("/") + "/v1/traces"
    if not endpoint:
        return None
    headers = dict(t.headers)
    if not headers:
        raw = env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS") or ""
        from urllib.parse import unquote

        for item in filter(None, (part.strip() for part in raw.split(","))):
            name, sep, value = item.partition("=")
            if sep and name.strip():
                headers[unquote(name.strip())] = SecretStr(unquote(value.strip()))
    return TracesSpec(endpoint=endpoint, sampling_ratio=t.sampling_ratio, headers=headers,
                      export_timeout_s=t.export_timeout_s)


class BalanceSpec(msgspec.Struct, frozen=True, kw_only=True):
    check: bool = True               # read the live balance, where the adapter can
    readable: bool = False           # the adapter can (it has balance()): known here, so routers import no adapter
    near_zero: float = 10.0          # at or below this many calls: treated as a spent quota
    interval_s: float = 300.0


class ProviderSpec(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    capability: str
    adapter: str
    index: int                       # configured order
    config_path: str                 # e.g. capabilities.email_sending.providers[0]
    settings: dict[str, Any]         # the adapter's validated settings, secrets as SecretStr
    env_refs: dict[str, str]         # setting -> environment variable it came from
    env_secrets: list[SecretStr]     # values read from secret-looking environment variables
    health: dict[str, Any]           # HealthPolicy fields
    max_concurrency: int
    delivers: bool
    has_probe: bool
    auth_settings: list[str]
    state: StateSpec                 # the durable store (journal, outbox)
    attempt_timeout_s: float = _default("RoutingConfig", "attempt_timeout_s")  # the most one attempt here may take
    last_resort: bool = False        # the outbox: tried only when no real provider can take a request
    reaches_network: bool = True     # False: talks to no outside service (simulated, noop, outbox)
    ray_options: dict[str, Any] = {}  # placement: resources, num_cpus, memory
    resends_deduplicated: list[str] = []
    rate_limit_per_s: float | None = None
    rate_limit_burst: float | None = None
    enabled: bool = True
    hooks: HooksSpec = msgspec.field(default_factory=HooksSpec)        # on_health_change only
    metrics: MetricsSpec = msgspec.field(default_factory=MetricsSpec)
    price: Price | None = None       # cost and quota (actors/policy/cost/quota.py, actors/provider/spending.py)
    chaos: ChaosPolicy = msgspec.field(default_factory=ChaosPolicy)  # checked again by the actor on `set_fault`
    quota: Quota | None = None
    balance: BalanceSpec = msgspec.field(default_factory=BalanceSpec)
    traces: TracesSpec | None = None  # actors/telemetry: None, traces off

    @property
    def reads_balance(self) -> bool:
        """Its live balance is read: its adapter can, and the config did not say not to."""
        return self.balance.check and self.balance.readable

    @property
    def metered(self) -> bool:
        """Its provider actor keeps spend for it (a price, a quota or a live balance)."""
        return self.price is not None or self.quota is not None or self.reads_balance

    @property
    def actor_name(self) -> str:
        return provider_name(self.capability, self.name)

    def secret_values(self) -> list[str]:
        """Every secret this provider knows, in plain text, for redaction."""
        out = [v.get_secret_value() for v in self.settings.values() if isinstance(v, SecretStr)]
        out += [s.get_secret_value() for s in self.env_secrets]
        return out + ([self.state.password.get_secret_value()] if self.state.password is not None else [])

    def without_secrets(self) -> "ProviderSpec":
        """This spec fit to hand to a client: every secret setting (SecretStr, or
        read from a secret-looking environment variable) masked, no env_secrets.
        (A SecretStr only hides itself from repr: pickled, it travels whole.)"""
        masked = {k: MASK if isinstance(v, SecretStr) or _secret_ref(self.env_refs.get(k)) else v
                  for k, v in self.settings.items()}
        return msgspec.structs.replace(self, settings=masked, env_secrets=[], state=_public_state(self.state))

    def health_policy(self) -> HealthPolicy:
        return HealthPolicy(**self.health)

    @property
    def digest(self) -> str:
        return _digest(self)


class CapabilitySpec(msgspec.Struct, frozen=True, kw_only=True):
    capability: str
    providers: list[ProviderSpec]
    routing: RoutingSpec
    dry_run: bool
    state: StateSpec
    hooks: HooksSpec = msgspec.field(default_factory=HooksSpec)        # global and this capability's, together
    audit: AuditSpec = msgspec.field(default_factory=AuditSpec)
    metrics: MetricsSpec = msgspec.field(default_factory=MetricsSpec)
    ray_options: dict[str, Any] = {}  # the router's placement
    outlier: OutlierPolicy = msgspec.field(default_factory=OutlierPolicy)  # policy.outlier, per capability
    traces: TracesSpec | None = None  # actors/telemetry: None, traces off
    delivery_health: DeliveryHealthPolicy = msgspec.field(default_factory=DeliveryHealthPolicy)  # delivery.health
    drop_fallback: DropFallbackPolicy = msgspec.field(default_factory=DropFallbackPolicy)  # delivery.drop_fallback
    suppress: bool = False           # refuse sends to suppressed addresses (on where a provider posts events)

    @property
    def actor_name(self) -> str:
        return router_name(self.capability)

    @property
    def digest(self) -> str:
        return _digest(self)


class SupervisorSpec(msgspec.Struct, frozen=True, kw_only=True):
    ray_options: dict[str, Any] = {}
    check_interval_s: float
    check_jitter_s: float
    probe_timeout_s: float
    drain_interval_s: float
    drain_rate_per_s: float
    probe_all_nodes: bool = False
    node_probe_timeout_s: float = 30.0
    sample_interval_s: float = 0.0


class GatewaySpec(msgspec.Struct, frozen=True, kw_only=True):
    namespace: str
    source: str
    capabilities: list[CapabilitySpec]
    supervisor: SupervisorSpec
    state: StateSpec
    metrics: MetricsSpec = msgspec.field(default_factory=MetricsSpec)
    chaos: ChaosPolicy = msgspec.field(default_factory=ChaosPolicy)  # `chaos inject` allowed, and its bounds
    # placement.avoid_head: applied at `up` against the nodes of the day (actors/deploy/placement.py);
    # the head's node id is never in a spec (it changes when the head restarts).
    avoid_head: str = "auto"
    http_host: str | None = None             # where the HTTP API listens (None: it is off), for the self-check
    http_behind_tls_proxy: bool = False

    @property
    def digest(self) -> str:
        return _digest(self)

    @property
    def actor_count(self) -> int:
        """The supervisor, a router per capability and an actor per provider."""
        return 1 + sum(1 + len(c.providers) for c in self.capabilities)

    def without_secrets(self) -> "GatewaySpec":
        """What the supervisor's `spec()` hands out: no secret of any provider, nor the store's password."""
        caps = [msgspec.structs.replace(c, providers=[p.without_secrets() for p in c.providers],
                                        state=_public_state(c.state))
                for c in self.capabilities]
        return msgspec.structs.replace(self, capabilities=caps, state=_public_state(self.state))


def _public_state(state: StateSpec) -> StateSpec:
    return msgspec.structs.replace(state, password=None) if state.password is not None else state


def _secret_ref(var: str | None) -> bool:
    return bool(var and SECRET_NAME.search(var))


def _delivery_health(cap: Any) -> DeliveryHealthPolicy:
    """On only where a provider posts delivery events: otherwise there is nothing to read."""
    health = cap.delivery.health.model_dump()
    health["enabled"] = health["enabled"] and any(p.events is not None for p in cap.providers)
    return DeliveryHealthPolicy(**health)


def _longest_deadline(policy: PolicyConfig) -> float:
    routing = policy.routing
    return routing.max_deadline_s if routing.max_deadline_s is not None else routing.deadline_s


def _plain(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _digest(spec: msgspec.Struct) -> str:
    # Secrets are part of what makes two specs differ (a new password must
    # reach the actor), so they are hashed, never stored or shown.
    builtins = msgspec.to_builtins(spec, enc_hook=_plain)
    text = json.dumps(_plain(builtins), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _routing(policy: PolicyConfig) -> RoutingSpec:
    return msgspec.convert(policy.routing.model_dump(), RoutingSpec)


DEFAULT_STATE_DIR = "~/.local/state/aicmo-gateway"


def state_url(cfg: GatewayConfig, env: dict[str, str] | None = None) -> str:
    """A directory gets a subfolder per namespace, so gateways never share
    state by accident; `~` is expanded by the actor, on its own node. May
    hold a password (PostgreSQL): use `state_spec` for anything shown."""
    env = os.environ if env is None else env
    url = cfg.state.url or env.get("AICMO_STATE_DIR") or DEFAULT_STATE_DIR
    if "://" in url:
        return url
    return str(Path(url) / cfg.namespace)


def state_spec(cfg: GatewayConfig, env: dict[str, str] | None = None) -> StateSpec:
    """The URL without its password, the password apart as a secret."""
    from actors.durable import parse_state_url

    url = state_url(cfg, env)
    location = parse_state_url(url)  # the config checked it already
    shown = location.display if location.kind == "postgresql" else url
    return StateSpec(url=shown, namespace=cfg.namespace,
                     password=SecretStr(location.password) if location.password else None,
                     retention_s=cfg.state.retention_s, prune_interval_s=cfg.state.prune_interval_s,
                     pool_size=cfg.state.pool_size)


def _hooks(cfg: GatewayConfig, capability: str) -> HooksSpec:
    """The top-level hooks, then the capability's own: both run."""
    top, own = cfg.hooks, cfg.capabilities[capability].hooks
    return HooksSpec(on_success=[*top.on_success, *own.on_success], on_failure=[*top.on_failure, *own.on_failure],
                     on_health_change=[*top.on_health_change, *own.on_health_change],
                     timeout_s=top.timeout_s, queue_size=top.queue_size)


def build_spec(cfg: GatewayConfig, source: str = "<config>") -> GatewaySpec:
    # The adapters' classes say what each provider can do; they are the
    # driver's business, not the actors' that receive the spec.
    from actors.adapters.base import Adapter
    from actors.adapters.registry import get_adapter_class

    state = state_spec(cfg)
    metrics = msgspec.convert(cfg.metrics.model_dump(), MetricsSpec)
    audit = msgspec.convert(cfg.audit.model_dump(), AuditSpec)
    traces = traces_spec(cfg)
    caps: list[CapabilitySpec] = []
    for cap_name, cap in cfg.capabilities.items():
        hooks = _hooks(cfg, cap_name)
        providers: list[ProviderSpec] = []
        for i, p in enumerate(cap.providers):
            if not p.enabled:
                continue
            adapter_cls = get_adapter_class(p.adapter)
            policy = cfg.provider_policy(cap_name, p)
            settings = p.validated_settings
            env_secrets = [
                SecretStr(str(_plain(getattr(settings, key))))
                for key, var in p.env_refs.items()
                if "." not in key and _secret_ref(var) and hasattr(settings, key)
            ]
            providers.append(
                ProviderSpec(
                    name=p.name,
                    capability=cap_name,
                    adapter=p.adapter,
                    index=i,
                    config_path=f"capabilities.{cap_name}.providers[{i}]",
                    settings=dict(settings),
                    env_refs=p.env_refs,
                    env_secrets=env_secrets,
                    health=policy.health.model_dump(),
                    max_concurrency=policy.provider.max_concurrency,
                    delivers=adapter_cls.delivers,
                    has_probe=adapter_cls.probes_with(settings),
                    attempt_timeout_s=policy.routing.attempt_timeout_s,
                    auth_settings=list(adapter_cls.auth_settings),
                    state=state,
                    last_resort=adapter_cls.last_resort,
                    reaches_network=adapter_cls.reaches_network,
                    ray_options=(p.placement or cfg.placement.providers).ray_options(),
                    resends_deduplicated=sorted(adapter_cls.resends_deduplicated),
                    rate_limit_per_s=policy.provider.rate_limit_per_s,
                    rate_limit_burst=policy.provider.rate_limit_burst,
                    hooks=HooksSpec(on_health_change=hooks.on_health_change, timeout_s=hooks.timeout_s,
                                    queue_size=hooks.queue_size),
                    metrics=metrics,
                    price=p.cost.to_price() if p.cost is not None else None,
                    quota=p.quota.to_quota() if p.quota is not None else None,
                    balance=BalanceSpec(**p.balance.model_dump(),
                                        readable=adapter_cls.balance is not Adapter.balance),
                    chaos=cfg.chaos.to_policy(),
                    traces=traces,
                )
            )
        caps.append(
            CapabilitySpec(
                capability=cap_name,
                providers=providers,
                routing=_routing(cfg.capability_policy(cap_name)),
                dry_run=cfg.dry_run,
                state=state,
                hooks=hooks,
                audit=audit,
                metrics=metrics,
                ray_options=cfg.placement.routers.ray_options(),
                outlier=cfg.capability_policy(cap_name).outlier.to_policy(),
                traces=traces,
                delivery_health=_delivery_health(cap),
                drop_fallback=DropFallbackPolicy(**cap.delivery.drop_fallback.model_dump()),
                suppress=cap.delivery.suppress_hard_bounces and any(p.events is not None for p in cap.providers),
            )
        )
    s = cfg.supervisor
    return GatewaySpec(
        namespace=cfg.namespace,
        source=source,
        capabilities=caps,
        supervisor=SupervisorSpec(
            ray_options=cfg.placement.supervisor.ray_options(),
            check_interval_s=s.check_interval_s, check_jitter_s=s.check_jitter_s, probe_timeout_s=s.probe_timeout_s,
            drain_interval_s=s.drain_interval_s, drain_rate_per_s=s.drain_rate_per_s,
            probe_all_nodes=s.probe_all_nodes, node_probe_timeout_s=s.node_probe_timeout_s,
            sample_interval_s=s.sample_interval_s,
        ),
        state=state,
        metrics=metrics,
        chaos=cfg.chaos.to_policy(),
        avoid_head=cfg.placement.avoid_head,
        http_host=cfg.http.host if cfg.http.enabled else None,
        http_behind_tls_proxy=cfg.http.behind_tls_proxy,
    )

