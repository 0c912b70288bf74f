"""aicmo-gateway: one call per capability, kept working across many providers, on Ray.

Driver scripts use the client (actors.client):

    from actors.client import Gateway
    gw = Gateway.connect(namespace="aicmo")
    result = gw.invoke("email_sending", "send_email", {...}, idempotency_key="lead-42-welcome")

This module's public surface is the message and error types a caller sees.
"""

from actors.errors import ConfigError, ErrorKind, GatewayError, ProviderError
from actors.messages import (
    Attempt,
    CapabilityStatus,
    ErrorInfo,
    InvokeResult,
    ProbeResult,
    ProviderStatus,
    Recommendation,
    SelfCheckReport,
    SkipInfo,
    StatusReport,
)
from actors.payloads import CAPABILITIES, METHODS
from actors.policy.health import Health

__all__ = [
    "CAPABILITIES",
    "METHODS",
    "Attempt",
    "CapabilityStatus",
    "ConfigError",
    "ErrorInfo",
    "ErrorKind",
    "GatewayError",
    "Health",
    "InvokeResult",
    "ProbeResult",
    "ProviderError",
    "ProviderStatus",
    "Recommendation",
    "SelfCheckReport",
    "SkipInfo",
    "StatusReport",
]
