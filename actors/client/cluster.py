"""Joining a Ray cluster as a driver, with errors that say what to do."""

from __future__ import annotations

import logging
import os
import socket

from actors.errors import ClusterUnreachable

__all__ = ["default_namespace", "join", "use_token_auth_if_available"]


def default_namespace() -> str:
    return os.environ.get("AICMO_NAMESPACE") or "aicmo"


def use_token_auth_if_available() -> None:
    """Ray 2.60 clusters started with `ray start --head` require a token, and a
    client sends it only with RAY_AUTH_MODE=token (ray.init(address="auto")
    works without; an explicit address and `ray job submit` do not). A token
    client also works against a cluster with auth off, so turn it on whenever a
    token is at hand and the user has not chosen. Must run before Ray reads it."""
    if "RAY_AUTH_MODE" in os.environ:
        return
    token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    if os.environ.get("RAY_AUTH_TOKEN") or os.path.exists(token_file):
        os.environ["RAY_AUTH_MODE"] = "token"


def _check_reachable(target: str, timeout_s: float = 3.0) -> None:
    """Fail fast on an address nothing listens at: Ray itself keeps retrying
    the GCS for minutes before it gives up."""
    host, sep, port = target.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return  # "auto", "local" and the like: Ray resolves those itself, quickly
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ClusterUnreachable(
            f"cannot reach a Ray cluster at {target!r}: {exc.strerror or exc}\n"
            "  start one with `ray start --head`, or pass --address / set RAY_ADDRESS "
            "(host:port of the head's GCS, 6379 by default).") from None


def join(address: str | None, namespace: str) -> None:
    """ray.init unless this process is already a driver (a Ray job, a Serve
    replica, a test session): then its connection is used as it is."""
    import ray

    if ray.is_initialized():
        return
    use_token_auth_if_available()
    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    _check_reachable(target)
    try:
        ray.init(address=target, namespace=namespace, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ClusterUnreachable(
            f"cannot reach a Ray cluster at {target!r}: {first}\n"
            "  start one with `ray start --head`, or pass --address / set RAY_ADDRESS.\n"
            "  If the cluster uses token auth (Ray's default), the token must be in ~/.ray/auth_token "
            "or RAY_AUTH_TOKEN.") from None
