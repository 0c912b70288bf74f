"""The Python client: a driver's handle on a deployed gateway.

    from actors.client import Gateway
    gw = Gateway.connect(namespace="aicmo")
    res = gw.invoke("email_sending", "send_email", {"to": ["ann@example.com"], "subject": "Hi", "text": "Hello"},
                    idempotency_key="lead-42-welcome", deadline_s=10.0)
    res.raise_for_error()            # res when ok; else the RequestFailed subclass of its kind

A call the router dropped (it crashed or is restarting) is sent again with
the same idempotency key within the call's deadline: see gateway.py.
"""

from actors.client.cluster import use_token_auth_if_available as _use_token_auth

# Before anything imports ray: Ray reads RAY_AUTH_MODE once, at import (see cluster.py).
_use_token_auth()

from actors.client.gateway import Gateway  # noqa: E402 - after the auth mode is decided
from actors.client.resend import ResendPolicy  # noqa: E402
from actors.errors import (  # noqa: E402
    AllProvidersFailed,
    AllProvidersThrottled,
    ClusterUnreachable,
    DeadlineExceeded,
    GatewayError,
    GatewayUnavailable,
    IdempotencyKeyReused,
    InvalidRequest,
    NoAvailableProvider,
    NotDeployed,
    OutcomeUnknown,
    RequestFailed,
    RetryBudgetExhausted,
    StoreDown,
    Suppressed,
    UnknownMethod,
)
from actors.messages import Attempt, ErrorInfo, InvokeResult  # noqa: E402

__all__ = [
    "AllProvidersFailed",
    "AllProvidersThrottled",
    "Attempt",
    "ClusterUnreachable",
    "DeadlineExceeded",
    "ErrorInfo",
    "Gateway",
    "GatewayError",
    "GatewayUnavailable",
    "IdempotencyKeyReused",
    "InvalidRequest",
    "InvokeResult",
    "NoAvailableProvider",
    "NotDeployed",
    "OutcomeUnknown",
    "RequestFailed",
    "ResendPolicy",
    "RetryBudgetExhausted",
    "StoreDown",
    "Suppressed",
    "UnknownMethod",
]
