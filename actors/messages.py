"""Messages between actors and to users: frozen msgspec Structs.

New fields get defaults so that older readers and writers keep working
(msgspec schema evolution). Unknown fields are tolerated on the wire.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from actors.durable.store import StoreHealth
from actors.errors import ErrorKind, request_error
from actors.policy.health import Health, HealthSnapshot
from actors.policy.outliers.detection import Sample
from actors.policy.recommendation import Recommendation  # noqa: F401 - re-exported (SelfCheckReport carries it)
from actors.policy.skips import SkipReason


class Message(msgspec.Struct, frozen=True, kw_only=True):
    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)


class ErrorInfo(Message):
    kind: ErrorKind
    message: str
    # When trying again may succeed: the earliest a throttled, cooling-down
    # or restarting provider (or router) frees up. None: nothing to wait for.
    retry_after_s: float | None = None


class Attempt(Message):
    provider: str
    ok: bool
    error_kind: ErrorKind | None = None
    error: str | None = None
    latency_ms: float = 0.0
    trial: bool = False          # a half-open trial of a provider that was unhealthy
    hedge: bool = False          # a backup sent while another attempt was still running
    maybe_delivered: bool = False  # it failed, but the provider may have acted on it
    injected: bool = False       # a live fault (`aicmo-gateway chaos inject`) acted on it; a failure it made sent nothing


class SkipInfo(Message):
    """A provider a request did not try, and why: `reason` is one of the
    closed set of policy/skips.py (`cooling_down`, `quota_exhausted`, ...),
    for programs; `detail` says it in words, for people."""

    provider: str
    reason: SkipReason
    detail: str = ""


class InvokeResult(Message):
    ok: bool
    value: Any = None
    provider: str | None = None
    attempts: list[Attempt] = []
    error: ErrorInfo | None = None
    request_id: str = ""
    idempotency_key: str | None = None
    dry_run: bool = False
    elapsed_ms: float = 0.0
    capability: str = ""
    method: str = ""
    replayed: bool = False       # a repeated idempotency key: this is the first result, nothing was sent again
    outbox_id: int | None = None  # the request is in the outbox: queued for delivery, or parked (outcome unknown)
    skips: list[SkipInfo] = []   # providers of its plan it did not try, each with its typed reason
    trace_id: str | None = None  # its OpenTelemetry trace (32 hex characters); None: not traced (actors/telemetry)
    span_id: str | None = None   # the router's span of it in that trace (the HTTP API's traceparent names it)

    # The seed's (success, result, provider_used) tuple.
    def as_tuple(self) -> tuple[bool, Any, str | None]:
        return self.ok, self.value, self.provider

    def raise_for_error(self) -> "InvokeResult":
        """This result when ok; else raise the GatewayError subclass of its
        kind (actors.errors.RequestFailed), carrying this result. As httpx's
        raise_for_status: `value = gw.invoke(...).raise_for_error().value`."""
        if self.ok:
            return self
        raise request_error(self)

    @property
    def queued(self) -> bool:
        """Accepted by the outbox, not delivered yet: it will be, once."""
        return self.ok and self.outbox_id is not None and isinstance(self.value, dict) \
            and not self.value.get("delivered", True)


class CallContext(Message):
    """What a provider actor needs to know about one attempt besides the payload."""

    request_id: str
    method: str
    idempotency_key: str | None = None
    dry_run: bool = False
    timeout_s: float = 10.0
    # Keep this attempt in the provider's delivery journal: set for keyed,
    # non-idempotent requests, whose effect must happen at most once.
    journal: bool = False
    # How long it may wait for a slot of the provider's rate limit (actors/provider/pacing.py);
    # None: up to half its time. A router with another provider to try allows a moment only.
    pace_s: float | None = None
    # The W3C trace context of the router's span of this attempt (actors/telemetry): the provider's span is its child.
    traceparent: str | None = None
    # Sent by the client straight to the provider (actors/client/direct.py): no router span is its parent, so
    # the provider's span is the request's root (or a child of the caller's span, given as traceparent).
    direct: bool = False


class CallReply(Message):
    """A provider actor's answer to one attempt, carrying its health after it,
    so the router learns health without a second round trip."""

    ok: bool
    value: Any = None
    error_kind: ErrorKind | None = None
    error: str | None = None
    latency_ms: float = 0.0
    retry_after_s: float | None = None
    health: HealthSnapshot = HealthSnapshot()
    maybe_delivered: bool = False  # failed, but the provider may have acted on it
    replayed: bool = False         # answered from the journal: delivered earlier, not sent again
    injected: bool = False         # a live fault acted on it (actors/provider/faults.py); its failure sent nothing
    quota_exhausted: str | None = None   # quota | balance: the provider's quota is spent (actors/provider/spending.py)
    quota_resets_at: float | None = None  # when a spent quota's period turns
    paced_until: float | None = None      # refused at the provider's rate limit: its next free slot (wall time)
    trace_id: str | None = None           # a traced direct call's span (actors/telemetry), for the caller's result
    span_id: str | None = None


class Resolution(Message):
    """What a provider knows of a keyed request whose outcome was unknown."""

    state: Literal["delivered", "not_delivered", "unknown"]
    value: Any = None
    error: str | None = None


# ProviderStatus carries a HealthSnapshot's fields flat, `health` being its
# state as shown: the shape users read (`status --json`, the HTTP API's
# /v1/status, `ProviderStatus.health == "healthy"`). Embedding the snapshot
# would nest them under `health` and change that shape; instead the copy in
# both directions goes through this one list (tests/unit/test_status_shape.py
# fails if the two structs drift apart).
HEALTH_FIELDS: tuple[str, ...] = tuple(f for f in HealthSnapshot.__struct_fields__ if f != "state")


class FaultStatus(Message):
    """The live fault on a provider, as `status` shows it (policy.chaos.Fault has it all)."""

    id: str
    fail_rate: float
    error: ErrorKind
    latency_ms: float
    expires_at: float
    injected_by: str


class ProviderStatus(Message):
    name: str
    capability: str
    adapter: str
    health: Health = Health.UNKNOWN
    consecutive_successes: int = 0
    consecutive_failures: int = 0
    latency_ms: float | None = None
    latency_ewma_ms: float | None = None
    total_calls: int = 0
    total_failures: int = 0      # failures counted against health (not refusals of a bad request, not 429s)
    total_ok: int = 0            # calls the provider served
    last_error: str | None = None
    last_error_kind: ErrorKind | None = None
    last_checked: float | None = None
    cooldown_until: float | None = None
    throttled_until: float | None = None
    in_flight: int = 0
    max_concurrency: int = 0
    delivers: bool = True        # False for the noop and outbox adapters: they answer but send nothing
    last_resort: bool = False    # the outbox: queues what no real provider could take
    warnings: list[str] = []     # e.g. TLS verification turned off
    cleartext: list[str] = []    # settings that send credentials unencrypted over the network (actors/adapters/cleartext.py)
    reachable: bool = True       # False when the actor could not be asked
    fault: FaultStatus | None = None  # a live fault (`aicmo-gateway chaos inject`); gone when it expires
    spend: float = 0.0           # this period's charged calls, in `currency` (actors/policy/cost/quota.py)
    currency: str | None = None
    quota_left: int | None = None        # None without a quota
    quota_limit: int | None = None
    quota_period_end: float | None = None
    balance_left: float | None = None    # the live balance less the calls since it was read
    quota_exhausted: str | None = None   # quota | balance: skipped as quota_exhausted
    probe_samples: list[Sample] = []     # its latest health-check probes (outlier ejection compares them)
    ejected_until: float | None = None   # outlier ejection: out of rotation until then (None: in rotation)
    ejection_reason: str | None = None   # failure_percentage | success_rate | slow_calls (ejected or on probation)
    on_probation: bool = False           # its ejection is over; tried after the rest until a sweep clears it
    ejections: int = 0                   # the ejection-time multiplier (ejections in a row, decays when well)
    delivery: str | None = None          # from its delivery events: "degraded: ..." / "ejected: ..." (None: healthy)

    @classmethod
    def from_health(cls, h: HealthSnapshot, **fields: Any) -> "ProviderStatus":
        return cls(health=h.state, **{f: getattr(h, f) for f in HEALTH_FIELDS}, **fields)

    def health_snapshot(self, state: Health | None = None) -> HealthSnapshot:
        """The HealthSnapshot this status shows; `state` instead of the shown
        one (THROTTLED is only ever shown, never stored)."""
        return HealthSnapshot(state=self.health if state is None else state,
                              **{f: getattr(self, f) for f in HEALTH_FIELDS})


class Operation(Message):
    """One entry of a router's recent-operations log (the seed's audit ring)."""

    at: float
    request_id: str
    method: str
    ok: bool
    provider: str | None = None
    attempts: int = 0
    error_kind: ErrorKind | None = None
    error: str | None = None
    dry_run: bool = False
    elapsed_ms: float = 0.0


class Decision(Message):
    """Everything about how one request was routed: the plan, why providers
    were skipped, every attempt with its timing, the outcome. Handed to the
    router's observers (audit log, metrics, hooks). Holds the payload's
    idempotency key but never the payload itself."""

    at: float
    capability: str
    method: str
    request_id: str
    ok: bool
    idempotency_key: str | None = None
    provider: str | None = None
    error_kind: ErrorKind | None = None
    error: str | None = None
    dry_run: bool = False
    replayed: bool = False
    outbox_id: int | None = None
    elapsed_ms: float = 0.0
    candidates: list[str] = []
    skipped: dict[str, str] = {}         # provider -> why it was not tried, in words (as `skips` has it)
    attempts: list[Attempt] = []
    draining: bool = False
    skips: list[SkipInfo] = []           # the same providers, each with its typed reason and the words
    trace_id: str | None = None          # its OpenTelemetry trace, when traced: from an audit line to the trace


class Ranking(Message):
    """What a router publishes for clients that send idempotent calls straight
    to provider actors (actors/client/direct.py). The router stays the
    authority on health: providers push their health to it, and a client
    asks again after `valid_for_s` or after any failure."""

    capability: str
    providers: list[str] = []              # most preferred first; empty: go through the router
    actor_names: dict[str, str] = {}       # provider -> its actor's name
    attempt_timeout_s: dict[str, float] = {}
    dry_run: bool = False                  # the config's default
    valid_for_s: float = 1.0


class ReplicaStatus(Message):
    """One router replica of a capability, as `status` shows it."""

    index: int
    name: str                                # router:<capability> for replica 0, router:<capability>#<index> after
    alive: bool = True                       # False: it did not answer (dead, restarting, or stuck)
    node_id: str | None = None
    in_flight: int = 0                       # requests it is handling now
    served: int = 0                          # requests it took since it started
    overloaded: bool = False                 # refusing new requests: it cannot keep up (actors/policy/admission.py)
    refused: int = 0                         # requests it refused since it started, overloaded
    error: str | None = None                 # why it is not alive


class CapabilityStatus(Message):
    capability: str
    providers: list[ProviderStatus]          # ranked, most preferred first
    recent_operations: list[Operation] = []
    skipped: dict[str, str] = {}             # provider -> why the router would skip it now
    panic: bool = False                      # outlier ejection: too few providers in rotation, ejections ignored
    replicas: list[ReplicaStatus] = []       # the capability's router replicas, replica 0 first


class ActorNode(Message):
    """Where one of the gateway's actors runs."""

    node_id: str
    address: str = ""
    head: bool = False                       # the head node: the actor does not outlive the head's loss
    answered: bool = True                    # False: the actor did not answer now; its last known node


class StatusReport(Message):
    namespace: str
    generated_at: float
    capabilities: list[CapabilityStatus]
    store: StoreHealth | None = None         # the state store, as the supervisor reaches it
    actors: dict[str, ActorNode] = {}        # actor name -> its node (supervisor, routers, providers)
    cluster_nodes: int = 0                   # alive nodes as last seen (0: not known)
    # What the deployment exposes (actors/ops/exposure.py), one line each: a
    # store reached without verified TLS, plain HTTP on the network, chaos on.
    exposures: list[str] = []


class ProbeResult(Message):
    provider: str
    capability: str
    ok: bool
    error_kind: ErrorKind | None = None
    error: str | None = None
    latency_ms: float = 0.0
    delivers: bool = True


class CapabilityCheck(Message):
    capability: str
    served: bool                     # at least one provider that delivers passed its probe
    usable_providers: list[str]
    probes: list[ProbeResult]


class SelfCheckReport(Message):
    namespace: str
    generated_at: float
    ok: bool                         # every capability served
    capabilities: list[CapabilityCheck]
    recommendations: list[Recommendation] = []
    store: StoreHealth | None = None         # the state store, as the supervisor reaches it
