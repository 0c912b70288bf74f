"""The names of the gateway's Ray actors, built here and nowhere else.

Drivers, the CLI, the HTTP ingress, tests and benchmarks reach actors by
these names (in the config's namespace); the contract fixes them.
"""

from __future__ import annotations

__all__ = ["GATEWAY_PREFIXES", "HTTP_APP_PREFIX", "SUPERVISOR_NAME", "http_app_name", "is_gateway_actor", "provider_name",
           "router_name"]

SUPERVISOR_NAME = "supervisor"
GATEWAY_PREFIXES = ("provider:", "router:")
HTTP_APP_PREFIX = "aicmo-gateway-"


def router_name(capability: str) -> str:
    return f"router:{capability}"


def provider_name(capability: str, provider: str) -> str:
    return f"provider:{capability}:{provider}"


def is_gateway_actor(name: str) -> bool:
    return name == SUPERVISOR_NAME or name.startswith(GATEWAY_PREFIXES)


def http_app_name(namespace: str) -> str:
    """The Ray Serve application that carries a gateway's HTTP API."""
    return f"{HTTP_APP_PREFIX}{namespace}"
