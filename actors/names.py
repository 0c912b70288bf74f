"""The names of the gateway's Ray actors, built here and nowhere else.

Drivers, the CLI, the HTTP ingress, tests and benchmarks reach actors by
these names (in the config's namespace); the contract fixes them.
"""

from __future__ import annotations

__all__ = ["GATEWAY_PREFIXES", "HTTP_APP_PREFIX", "MAX_ROUTER_REPLICAS", "SUPERVISOR_NAME", "http_app_name",
           "is_gateway_actor", "provider_name", "router_capability", "router_name", "router_replica_name"]

SUPERVISOR_NAME = "supervisor"
GATEWAY_PREFIXES = ("provider:", "router:")
HTTP_APP_PREFIX = "aicmo-gateway-"


# The most router replicas a capability may have (policy.routing.replicas).
MAX_ROUTER_REPLICAS = 16


def router_name(capability: str) -> str:
    return f"router:{capability}"


def router_replica_name(capability: str, index: int) -> str:
    """Replica 0 keeps the router's own name (the contract's
    `ray.get_actor("router:<capability>")`); the others are numbered after it."""
    return router_name(capability) if index == 0 else f"{router_name(capability)}#{index}"


def router_capability(name: str) -> str | None:
    """The capability of a router's first replica's name; None for any other name."""
    prefix = router_name("")
    if not name.startswith(prefix) or "#" in name:
        return None
    return name[len(prefix):]


def provider_name(capability: str, provider: str) -> str:
    return f"provider:{capability}:{provider}"


def is_gateway_actor(name: str) -> bool:
    return name == SUPERVISOR_NAME or name.startswith(GATEWAY_PREFIXES)


def http_app_name(namespace: str) -> str:
    """The Ray Serve application that carries a gateway's HTTP API."""
    return f"{HTTP_APP_PREFIX}{namespace}"
