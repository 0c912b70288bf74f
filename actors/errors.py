"""Error kinds, and the one hierarchy of exceptions this package raises.

Every outcome is sorted into a closed set of kinds before anything acts on it
(health, ranking, fallback, recommendations). Kinds come at two levels, each
a closed set below: a request's (`InvokeResult.error.kind`, REQUEST_KINDS)
and an attempt's (`Attempt.error_kind`, ATTEMPT_KINDS); four kinds are both.
They share one enum, `ErrorKind`, whose string values are what users, the
CLI and the HTTP API read.

Adapters raise `ProviderError` subclasses, translated from their client
library's exceptions by one table per library (actors/adapters/errormap.py);
the provider actor turns anything else into `crashed`.

    GatewayError                 every error raised on purpose
    ├── ConfigError              invalid config file (carries field paths)
    ├── UnknownAdapter           (also LookupError) no adapter by that name
    ├── InvalidStateUrl          (also ValueError) state.url names no store we can open
    ├── PayloadError             (also ValueError) a payload or an option of invoke is invalid
    ├── InvalidFault             (also ValueError) a live fault to inject is invalid (policy.chaos)
    ├── HookError                a configured hook cannot be loaded
    ├── StoreUnavailable         the state store did not answer
    ├── ClusterUnreachable       no Ray cluster answers at the address (actors.client.Gateway.connect)
    ├── GcsUnavailable           the cluster's GCS did not answer a name lookup in time (head down?)
    ├── NotDeployed              no gateway actor by that name in the namespace
    ├── HttpDeployError          the HTTP API could not be deployed
    ├── CliError                 ends a CLI command with its exit code
    ├── ActorUnreachable         the router could not ask a provider actor (carries the attempt's kind)
    ├── WrongReplyCount          a provider actor answered a batch with too few or too many replies
    ├── RequestFailed            an invoke's result was not ok (InvokeResult.raise_for_error);
    │   │                        carries the result, its kind, attempts and request_id
    │   ├── InvalidRequest         invalid_request
    │   ├── UnknownMethod          unknown_method
    │   ├── AllProvidersFailed     all_providers_failed
    │   ├── AllProvidersThrottled  rate_limited (every provider throttled; retry_after_s)
    │   ├── NoAvailableProvider    no_available_provider
    │   ├── RetryBudgetExhausted   retry_budget_exhausted
    │   ├── DeadlineExceeded       deadline_exceeded
    │   ├── OutcomeUnknown         outcome_unknown (parked as outbox_id)
    │   ├── GatewayUnavailable     gateway_unavailable (the router could not be reached)
    │   ├── IdempotencyKeyReused   idempotency_key_reused (the key was used for another request)
    │   ├── StoreDown              store_unavailable (nothing sent; retry with the same key)
    │   └── Suppressed             suppressed (a recipient bounced hard before; nothing sent)
    └── ProviderError            one attempt failed at a provider
        ├── TransientError     5xx, connection reset, temporary refusal
        ├── AttemptTimeout     no answer within the attempt's time
        ├── RateLimited        429 / SMTP 421, 451, 452; carries retry_after_s
        ├── AuthError          401/403, SMTP 535: credentials or permissions
        ├── ProviderRejected   400/422: the provider refused this payload
        ├── NotSupported       this provider cannot serve this request (skip)
        └── MalformedResponse  the provider answered something we cannot read

`ActorUnreachable` is the router's own: the provider *actor* could not be
asked, so nothing is known about the provider.
"""

from __future__ import annotations

import enum
from typing import Any


class ErrorKind(str, enum.Enum):
    # Request-level kinds: returned in InvokeResult.error (REQUEST_KINDS).
    # INVALID_REQUEST is both: as a request's error, the payload failed our
    # validation and no provider was called; as an attempt's, the provider
    # refused the payload (HTTP 400/422).
    INVALID_REQUEST = "invalid_request"
    UNKNOWN_METHOD = "unknown_method"            # the capability has no such method
    ALL_PROVIDERS_FAILED = "all_providers_failed"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    NO_AVAILABLE_PROVIDER = "no_available_provider"  # none configured, or none can serve it
    RETRY_BUDGET_EXHAUSTED = "retry_budget_exhausted"  # fallbacks are capped to a share of traffic
    # Both: an attempt that may or may not have been delivered (a timeout or
    # crash mid-send). As a request's error, it was NOT sent elsewhere but
    # parked in the outbox for an operator (`aicmo-gateway outbox list`).
    OUTCOME_UNKNOWN = "outcome_unknown"
    # Both: the state store (keys, journal) could not be read or written
    # within the deadline, so nothing was sent: without it no send can be
    # kept to once. Retry with the same key once the store is back.
    STORE_UNAVAILABLE = "store_unavailable"
    # The idempotency key was used before for a different request (another
    # method or payload): refused, nothing sent (Stripe's and the IETF
    # Idempotency-Key draft's rule).
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    # Set by the client, not the router: the capability's router could not be
    # reached within the deadline (restarting, or not deployed). The request
    # may have reached it: sending it again with the same idempotency key is safe.
    GATEWAY_UNAVAILABLE = "gateway_unavailable"
    # A recipient is on the suppression list (a hard bounce from an earlier
    # send, actors/events): refused, nothing sent. `aicmo-gateway suppression
    # remove ADDRESS` allows it again.
    SUPPRESSED = "suppressed"

    # Attempt-level kinds: returned in Attempt.error_kind (ATTEMPT_KINDS).
    TRANSIENT = "transient"
    TIMEOUT = "timeout"
    # Also a request's error: every real provider is throttled (its 429s, or
    # our configured rate limit) past what the deadline allows waiting for;
    # ErrorInfo.retry_after_s says when the first one frees up.
    RATE_LIMITED = "rate_limited"
    AUTH = "auth"
    NOT_SUPPORTED = "not_supported"              # provider cannot serve this request; skipped
    MALFORMED_RESPONSE = "malformed_response"
    CRASHED = "crashed"                          # adapter raised something unexpected, or the actor died
    UNAVAILABLE = "unavailable"                  # provider actor restarting or unreachable
    CANCELLED = "cancelled"                      # a hedged attempt that lost the race

    def __str__(self) -> str:
        return self.value


# Kinds that say something about the provider's health. INVALID_REQUEST and
# NOT_SUPPORTED are about the request; RATE_LIMITED is about our pace, and
# throttles the provider instead of marking it unhealthy.
COUNTS_AGAINST_HEALTH = frozenset(
    {
        ErrorKind.TRANSIENT,
        ErrorKind.TIMEOUT,
        ErrorKind.AUTH,
        ErrorKind.MALFORMED_RESPONSE,
        ErrorKind.CRASHED,
        ErrorKind.UNAVAILABLE,
    }
)


class GatewayError(Exception):
    """Base of every error this package raises on purpose."""


class UnknownAdapter(GatewayError, LookupError):
    """No adapter is registered under the name (actors/adapters/registry.py)."""


class InvalidStateUrl(GatewayError, ValueError):
    """`state.url` names no store we can open. The message never quotes the
    URL: it may hold a password."""


class InvalidFault(GatewayError, ValueError):
    """Every problem of a fault to inject, each a typed problem (a
    `policy.chaos.FaultProblem`) and a message for people."""

    def __init__(self, problems: list[tuple[Any, str]]):
        self.problems = problems
        super().__init__("; ".join(message for _, message in problems))


class PayloadError(GatewayError, ValueError):
    """A payload (or an option of invoke) failed validation; `path` is where
    (e.g. `$.to[0]`). The router answers it as invalid_request."""

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


class HookError(GatewayError):
    """A configured hook cannot be loaded (actors/ops/hooks.py)."""


class HttpDeployError(GatewayError):
    """The HTTP API could not be deployed; the message says why and what to do."""


class CliError(GatewayError):
    """Ends the command with `code` and prints `message` to stderr."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class ActorUnreachable(GatewayError):
    """The provider actor (not the provider) could not be asked. `kind` is
    the attempt's (unavailable, crashed, timeout). `maybe_delivered`: the
    call may have run before the actor went away."""

    def __init__(self, kind: ErrorKind, message: str, maybe_delivered: bool = False):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.maybe_delivered = maybe_delivered


class WrongReplyCount(GatewayError):
    """A provider actor answered a batch of `asked` calls with `answered` replies."""

    def __init__(self, asked: int, answered: int):
        super().__init__(f"answered a batch of {asked} with {answered} replies")
        self.asked = asked
        self.answered = answered


class ConfigError(GatewayError):
    """A config file failed validation. `problems` holds (field path, message)."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: invalid gateway config"]
        lines += [f"  {path or '<root>'}: {message}" for path, message in problems]
        super().__init__("\n".join(lines))


class ProviderError(GatewayError):
    """One attempt at one provider failed. The message must hold no secrets:
    the provider actor redacts it again before it leaves the actor.

    `maybe_delivered` is True when the request may have reached the provider
    and taken effect although we saw a failure (a read timeout after the
    request was written, a connection dropped before the reply, an SMTP
    timeout after the message data): sending it elsewhere could deliver
    twice. It is False when the provider certainly did not act on it
    (connection refused, an error status, an SMTP rejection).
    """

    kind: ErrorKind = ErrorKind.TRANSIENT

    def __init__(self, message: str, *, retry_after_s: float | None = None, status: int | None = None,
                 maybe_delivered: bool = False):
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s
        self.status = status
        self.maybe_delivered = maybe_delivered

    def reword(self, message: str) -> "ProviderError":
        """This error with another message (its `args` too, so str() agrees):
        the one way an adapter rewrites an error, to redact or to add detail."""
        self.message = message
        self.args = (message,)
        return self


class TransientError(ProviderError):
    kind = ErrorKind.TRANSIENT


class AttemptTimeout(ProviderError):
    kind = ErrorKind.TIMEOUT


class RateLimited(ProviderError):
    kind = ErrorKind.RATE_LIMITED


class AuthError(ProviderError):
    kind = ErrorKind.AUTH


class ProviderRejected(ProviderError):
    kind = ErrorKind.INVALID_REQUEST


class NotSupported(ProviderError):
    kind = ErrorKind.NOT_SUPPORTED


class MalformedResponse(ProviderError):
    kind = ErrorKind.MALFORMED_RESPONSE


class StoreUnavailable(GatewayError):
    """The state store did not answer (down, restarting, locked past its
    timeout, out of connections): nothing is known to have been written.
    The message names the store by its URL, never with a password."""

    def __init__(self, url: str, message: str):
        super().__init__(f"the state store {url} is unavailable: {message}")
        self.url = url
        self.message = message


class ClusterUnreachable(GatewayError):
    """`Gateway.connect` found no Ray cluster at the address; the message says what to do."""


class GcsUnavailable(GatewayError):
    """The cluster's GCS (on the head node) did not answer a lookup of an
    actor by name within the time given: the head is down or restarting.
    Calls through handles already held keep working meanwhile."""


class NotDeployed(GatewayError):
    """No gateway actor by the name asked for in the namespace: the gateway
    (or this capability of it) is not deployed there."""


class RequestFailed(GatewayError):
    """An invoke answered, and its result was not ok: raised by
    `InvokeResult.raise_for_error()` as the subclass of the result's kind.
    `result` is the whole InvokeResult (attempts, request_id, outbox_id)."""

    kind: ErrorKind | None = None

    def __init__(self, result: Any):
        error = result.error
        super().__init__(f"{result.capability}.{result.method}: {error.kind}: {error.message}" if error
                         else f"{result.capability}.{result.method} failed")
        self.result = result
        if error is not None:
            self.kind = error.kind
        self.message = error.message if error else ""
        self.request_id: str = result.request_id
        self.attempts: list[Any] = list(result.attempts)
        self.retry_after_s: float | None = error.retry_after_s if error else None


class InvalidRequest(RequestFailed):
    kind = ErrorKind.INVALID_REQUEST


class UnknownMethod(RequestFailed):
    kind = ErrorKind.UNKNOWN_METHOD


class AllProvidersFailed(RequestFailed):
    kind = ErrorKind.ALL_PROVIDERS_FAILED


class AllProvidersThrottled(RequestFailed):
    kind = ErrorKind.RATE_LIMITED


class NoAvailableProvider(RequestFailed):
    kind = ErrorKind.NO_AVAILABLE_PROVIDER


class RetryBudgetExhausted(RequestFailed):
    kind = ErrorKind.RETRY_BUDGET_EXHAUSTED


class DeadlineExceeded(RequestFailed):
    kind = ErrorKind.DEADLINE_EXCEEDED


class OutcomeUnknown(RequestFailed):
    kind = ErrorKind.OUTCOME_UNKNOWN


class GatewayUnavailable(RequestFailed):
    kind = ErrorKind.GATEWAY_UNAVAILABLE


class IdempotencyKeyReused(RequestFailed):
    kind = ErrorKind.IDEMPOTENCY_KEY_REUSED


class Suppressed(RequestFailed):
    kind = ErrorKind.SUPPRESSED


class StoreDown(RequestFailed):
    """The result of a request the state store did not answer for (the
    store's own error, inside the gateway, is StoreUnavailable)."""

    kind = ErrorKind.STORE_UNAVAILABLE


# The kinds an InvokeResult's error may have, each with its exception.
REQUEST_ERROR_BY_KIND: dict[ErrorKind, type[RequestFailed]] = {
    cls.kind: cls
    for cls in (InvalidRequest, UnknownMethod, AllProvidersFailed, AllProvidersThrottled, NoAvailableProvider,
                RetryBudgetExhausted, DeadlineExceeded, OutcomeUnknown, GatewayUnavailable, IdempotencyKeyReused,
                StoreDown, Suppressed)
}
REQUEST_KINDS = frozenset(REQUEST_ERROR_BY_KIND)


def request_error(result: Any) -> RequestFailed:
    """The exception for a failed InvokeResult: the subclass of its kind."""
    kind = result.error.kind if result.error is not None else None
    return REQUEST_ERROR_BY_KIND.get(kind, RequestFailed)(result)


ERROR_BY_KIND: dict[ErrorKind, type[ProviderError]] = {
    cls.kind: cls
    for cls in (TransientError, AttemptTimeout, RateLimited, AuthError, ProviderRejected, NotSupported, MalformedResponse)
}

# An attempt's kinds (Attempt.error_kind): a provider's failure, or the
# router's own (its actor unreachable, a hedge cancelled, an outcome unknown,
# the store unavailable for the journal).
ATTEMPT_KINDS = frozenset({cls.kind for cls in ERROR_BY_KIND.values()} | {
    ErrorKind.CRASHED, ErrorKind.UNAVAILABLE, ErrorKind.CANCELLED, ErrorKind.OUTCOME_UNKNOWN,
    ErrorKind.STORE_UNAVAILABLE})
