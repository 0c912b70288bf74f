"""Joining a Ray cluster and finding the gateway on it, with errors that say what to do."""

from __future__ import annotations

import logging
import os
from typing import Any


class CliError(Exception):
    """Ends the command with `code` and prints `message` to stderr."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def default_namespace() -> str:
    return os.environ.get("AICMO_NAMESPACE") or "aicmo"


def connect(address: str | None, namespace: str) -> None:
    import ray

    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    try:
        ray.init(address=target, namespace=namespace, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(2, f"cannot reach a Ray cluster at {target!r}: {first}\n"
                          "  start one with `ray start --head`, or pass --address / set RAY_ADDRESS.\n"
                          "  If the cluster uses token auth (Ray's default), the token must be in ~/.ray/auth_token "
                          "or RAY_AUTH_TOKEN.") from None


def get_actor(name: str, namespace: str) -> Any:
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        raise CliError(2, f"no actor {name!r} in namespace {namespace!r}: is the gateway deployed? "
                          "Deploy it with `aicmo-gateway up --config <file>` (or pass --namespace)") from None
