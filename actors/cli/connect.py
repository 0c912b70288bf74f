"""Joining a Ray cluster and finding the gateway on it, for the CLI: the
client (actors.client) does both; its errors end the command with exit 2."""

from __future__ import annotations

from typing import Any

from actors.client import Gateway
from actors.client.cluster import default_namespace, use_token_auth_if_available
from actors.errors import CliError, ClusterUnreachable, NotDeployed

__all__ = ["CliError", "connect", "default_namespace", "router", "supervisor", "use_token_auth_if_available"]



def connect(address: str | None, namespace: str) -> Gateway:
    try:
        return Gateway.connect(namespace=namespace, address=address)
    except ClusterUnreachable as exc:
        raise CliError(2, str(exc)) from None


def supervisor(gw: Gateway) -> Any:
    try:
        return gw.supervisor()
    except NotDeployed as exc:
        raise CliError(2, str(exc)) from None


def router(gw: Gateway, capability: str) -> Any:
    try:
        return gw.router(capability)
    except NotDeployed as exc:
        raise CliError(2, str(exc)) from None
