"""The provider actor's listener that tells its router and the supervisor
what changed, fire and forget: a slow or restarting peer must never hold up
a request.

    on_health_changed --> supervisor.report(status), router.health_changed(name, health)
                          (sent again once, to a peer looked up anew, if the call fails:
                          a redeploy may have replaced it under the same name)
    on_quota_flip ------> supervisor.report(status), router.quota_changed(status)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from actors.errors import GcsUnavailable
from actors.messages import CallReply, ProviderStatus
from actors.ops.directory import ActorDirectory
from actors.policy.health import HealthSnapshot
from actors.specs import SUPERVISOR_NAME, router_name

__all__ = ["Peers"]

# A provider's request waits at most this long on a lookup of its router or supervisor.
PEER_LOOKUP_S = 1.0


class Peers:
    """A ProviderListener (listener.py) over the router's and the supervisor's handles."""

    def __init__(self, namespace: str, health: Callable[[], HealthSnapshot]):
        """`health`: the provider's health now (the router is sent the snapshot,
        the latest one when a send is made again)."""
        self._namespace = namespace
        self._health = health
        # A lookup is a call to Ray's GCS made in the middle of a request (a
        # health change): kept handles, and bounded lookups that do not wait
        # at all while the GCS is known down (the head's outage).
        self._directory = ActorDirectory(namespace, wait_s=PEER_LOOKUP_S, owner="provider")

    def peer(self, name: str) -> Any:
        """The supervisor's or the router's handle (raises NotDeployed, GcsUnavailable)."""
        return self._directory.actor(name)

    def on_health_changed(self, status: ProviderStatus) -> None:
        for name in (SUPERVISOR_NAME, router_name(status.capability)):
            self._tell(name, status, resend=True)

    def on_quota_flip(self, status: ProviderStatus) -> None:
        """Its quota or balance was spent, or is back: the router plans with it
        (actors/router/quotas.py); fire and forget, like health."""
        for name in (SUPERVISOR_NAME, router_name(status.capability)):
            try:
                peer = self.peer(name)
                (peer.report if name == SUPERVISOR_NAME else peer.quota_changed).remote(status)
            except GcsUnavailable:  # the head's outage: the handle is kept, replies and status tell it later
                pass
            except Exception:  # noqa: BLE001 - not deployed yet, or gone: replies and status tell it later
                self._directory.forget(name)

    def on_reply(self, reply: CallReply, dry_run: bool) -> None:
        pass  # replies carry the health to the router already

    def on_spend(self, amount: float) -> None:
        pass

    def on_fault_applied(self, action: str) -> None:
        pass

    def _tell(self, name: str, status: ProviderStatus, resend: bool) -> None:
        try:
            peer = self.peer(name)
            if name == SUPERVISOR_NAME:
                ref = peer.report.remote(status)
            else:
                ref = peer.health_changed.remote(status.name, self._health())
        except GcsUnavailable:  # the head's outage: the supervisor's sampling catches up
            return
        except Exception:  # noqa: BLE001 - not deployed yet, or gone
            self._directory.forget(name)
            return
        if not resend:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not in a request: the supervisor's sampling catches up
            return

        # A redeploy may have replaced the peer with a new actor under the same
        # name: if the call fails, look the name up again and send once more.
        def sent(done: Any) -> None:
            if done.exception() is not None:
                loop.call_soon_threadsafe(self._tell_again, name, status)

        ref.future().add_done_callback(sent)

    def _tell_again(self, name: str, status: ProviderStatus) -> None:
        self._directory.forget(name)
        self._tell(name, status, resend=False)
