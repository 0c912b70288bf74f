"""Joining a Ray cluster as a driver, with errors that say what to do."""

from __future__ import annotations

import logging
import os
import socket
import sys

from actors.errors import ClusterUnreachable

__all__ = ["default_namespace", "join", "token_at_hand", "use_token_auth_if_available"]


def default_namespace() -> str:
    return os.environ.get("AICMO_NAMESPACE") or "aicmo"


def token_at_hand(env: dict[str, str] | None = None) -> bool:
    """A Ray token this process would send: RAY_AUTH_TOKEN, the file at
    RAY_AUTH_TOKEN_PATH, else ~/.ray/auth_token (where Ray looks, in that order)."""
    env = os.environ if env is None else env
    token_file = env.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser("~/.ray/auth_token")
    return bool(env.get("RAY_AUTH_TOKEN")) or os.path.exists(token_file)


def use_token_auth_if_available() -> None:
    """Send the token whenever one is at hand and the user has not chosen
    (RAY_AUTH_MODE unset). Ray 2.60 sends it only in token mode, which a
    driver that names an address (`--address`, RAY_ADDRESS) must ask for
    itself, and `ray start --head` turns token auth on when it finds a token.
    A token client also works against a cluster with auth off (measured: the
    README's auth table), so this never hurts.

    Ray reads RAY_AUTH_MODE once, when `ray` is imported (its RayConfig), so
    this runs before: at the import of actors.client (the CLI and drivers
    import it before anything imports ray). A driver that imported ray first
    gets Ray's config refreshed, as Ray itself does when it turns token mode
    on (authentication_token_setup._enable_token_auth). A process already
    connected (a Ray worker, a job's driver, a Serve replica) is left alone:
    its mode is its cluster's."""
    if "RAY_AUTH_MODE" in os.environ or not token_at_hand():
        return
    if "ray" not in sys.modules:
        os.environ["RAY_AUTH_MODE"] = "token"
        return
    import ray

    if ray.is_initialized():
        return
    os.environ["RAY_AUTH_MODE"] = "token"
    _refresh_ray_config()


def _refresh_ray_config() -> None:
    """Make an imported Ray read RAY_AUTH_MODE again. Ray's own call; without
    it (another Ray version), connecting says what to set."""
    try:
        from ray._raylet import Config
    except ImportError:
        return
    Config.initialize("")


def _bootstrap_address(target: str) -> str | None:
    """What `auto` stands for: the GCS address the last `ray start` on this
    machine wrote (Ray's own lookup; None: no such file, Ray searches itself)."""
    if target != "auto":
        return target
    try:
        from ray._private.services import find_bootstrap_address
    except ImportError:  # another Ray version: Ray resolves `auto` on its own
        return None
    try:
        return find_bootstrap_address(None)
    except Exception:  # noqa: BLE001 - a file we cannot read: Ray resolves `auto` on its own
        return None


def _check_reachable(target: str, timeout_s: float = 3.0) -> None:
    """Fail fast on an address nothing listens at: Ray itself keeps retrying
    the GCS for minutes before it gives up (measured: `ray.init` waits out a
    head's whole outage), so a head that is down or restarting must be told
    here, `auto` included."""
    resolved = _bootstrap_address(target)
    if resolved is None:
        return
    host, sep, port = resolved.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return  # "local" and the like: Ray resolves those itself, quickly
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        via = f" ({target!r} resolves to it)" if resolved != target else ""
        raise ClusterUnreachable(
            f"cannot reach a Ray cluster at {resolved!r}{via}: its head's GCS does not answer ({exc.strerror or exc})\n"
            "  the head node (its GCS) is down, restarting, or was never started. A head that restarts "
            "answers again within seconds: retry. Otherwise start one with `ray start --head`, or pass "
            "--address / set RAY_ADDRESS (host:port of the head's GCS, 6379 by default).\n"
            "  Clients already connected keep being answered while the head is down, when the cluster's GCS is "
            "fault tolerant and the gateway runs on worker nodes.") from None


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
            "  If the cluster uses token auth (`ray start --head` turns it on when it finds a token), its token "
            "must be in ~/.ray/auth_token here (`ray get-auth-token` on the head prints it), or in RAY_AUTH_TOKEN "
            "or the file RAY_AUTH_TOKEN_PATH names.") from None
