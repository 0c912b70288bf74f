"""The router replicas of one capability, as one client sees them, and which
one takes the next call: the power of two choices on the calls this client
has in flight at each (as Ray Serve's request router does with queue
lengths, `ray/serve/_private/request_router/pow_2_router.py`), a tie going
to the replica of the last call.

Replicas are found by name (actors.names: `router:<capability>`, then
`router:<capability>#1`, `#2`, ... until a name is not registered), once,
and again after a replica dropped a call (a redeploy may have changed their
number). A replica that dropped a call is left out for `DOWN_S` (Ray is
restarting it; about 2 s here) while its siblings take the calls: the
caller's resend goes to a live sibling at once instead of waiting.

Ray holds the calls sent to an actor it is restarting until the restart
(about 1.5 s here) and only then drops them, so a death is found sooner by
asking: a call silent for a while has its replica pinged (`ping`, one ping
per replica at a time, shared by all its silent calls), and a ping left
unanswered, while the replica answered no call either, sends the call to a
sibling (client/calls.py): a router too busy to answer a ping in time is
still answering calls, a dead one answers nothing.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.client.resend import resend_budget
from actors.errors import GcsUnavailable, NotDeployed
from actors.names import MAX_ROUTER_REPLICAS, router_replica_name
from actors.policy.budget import RetryBudget

__all__ = ["DOWN_S", "PING_SHARED_S", "TIMEOUT_CAP_S", "Replica", "RouterReplicas"]

# How long a replica that dropped a call is left out (Ray restarts a router in about 2 s).
DOWN_S = 3.0
# A ping sent less than this long ago answers for every call silent on its replica.
PING_SHARED_S = 0.05
# The longest a ping is waited on: past this, Ray has restarted a dead router and dropped its calls anyway.
TIMEOUT_CAP_S = 1.5


@dataclass
class Replica:
    index: int
    name: str
    handle: Any = None
    in_flight: int = 0
    down_until: float = float("-inf")
    down_at: float = float("-inf")       # when it was last left out
    ping: Any = None             # the last ping's ref, and when it was sent
    pinged_at: float = float("-inf")
    answered_at: float = float("-inf")   # when it last answered a call

    srtt_s: float | None = None          # its answers' smoothed latency and mean deviation (RFC 6298)
    rttvar_s: float = 0.0

    def answered(self, latency_s: float) -> None:
        """A call it answered `latency_s` after it was sent."""
        if self.srtt_s is None:
            self.srtt_s, self.rttvar_s = latency_s, latency_s / 2
        else:
            self.rttvar_s = 0.75 * self.rttvar_s + 0.25 * abs(self.srtt_s - latency_s)
            self.srtt_s = 0.875 * self.srtt_s + 0.125 * latency_s

    def timeout_s(self, floor_s: float) -> float:
        """How long a ping of it may take before it counts as gone: TCP's
        retransmission timeout over its calls' latency (srtt + 4 rttvar),
        at least `floor_s` and at most TIMEOUT_CAP_S. A replica that is slow
        because the machine is overloaded answers pings slowly too: waiting
        as long as its calls take keeps a slow router from being taken for
        a dead one (each such guess sends a call again, more load)."""
        if self.srtt_s is None:
            return floor_s
        return min(TIMEOUT_CAP_S, max(floor_s, self.srtt_s + 4 * self.rttvar_s))

    def live(self, now: float) -> bool:
        """Not left out, or answered a call since it was: a router that was
        only busy is back as soon as it answers; a dead one answers nothing."""
        return self.down_until <= now or self.answered_at > self.down_at


@dataclass
class RouterReplicas:
    """`lookup(name, timeout_s)` returns an actor handle or raises ValueError
    (not registered) or GcsUnavailable (no answer in time: the head is down)."""

    capability: str
    lookup: Callable[[str, float | None], Any]
    clock: Callable[[], float]
    rng: random.Random = field(default_factory=random.Random)
    replicas: list[Replica] = field(default_factory=list)
    stale: bool = True
    last: Replica | None = None      # the replica of the last call: a tie goes to it
    budget: RetryBudget = field(default_factory=resend_budget)   # resends on a ping's guess: client/calls.py

    def discover(self, timeout_s: float | None = None) -> None:
        found: list[Replica] = []
        for index in range(MAX_ROUTER_REPLICAS):
            name = router_replica_name(self.capability, index)
            known = next((r for r in self.replicas if r.index == index), None)
            if known is not None and known.handle is not None:
                found.append(known)   # a handle kept: no GCS needed for it
                continue
            try:
                handle = self.lookup(name, timeout_s)
            except ValueError:
                if index == 0:
                    raise NotDeployed(name) from None
                break
            if known is None:
                found.append(Replica(index, name, handle))
            else:   # found again (replaced by Ray or a redeploy): its counts go on
                known.handle, known.ping = handle, None
                found.append(known)
        self.replicas = found
        self.stale = False

    def pick(self, timeout_s: float | None = None) -> Replica:
        """The replica for the next call: of two live ones drawn at random, the
        one with fewer calls in flight; with none live, the one back soonest.
        While the GCS does not answer, the replicas already known serve."""
        if self.stale or not self.replicas:
            try:
                self.discover(timeout_s)
            except GcsUnavailable:
                if not self.replicas:
                    raise
        while True:
            now = self.clock()
            live = [r for r in self.replicas if r.live(now)]
            if not live:
                chosen = min(self.replicas, key=lambda r: r.down_until)
            elif len(live) == 1:
                chosen = live[0]
            else:
                a, b = self.rng.sample(live, 2)
                chosen = self._less_busy(a, b)
            if chosen.handle is not None:
                self.last = chosen
                return chosen
            try:
                chosen.handle = self.lookup(chosen.name, timeout_s)
                self.last = chosen
                return chosen
            except ValueError:
                # Removed (a redeploy with fewer replicas): the others take its calls.
                self.replicas.remove(chosen)
                self.stale = True
                if not self.replicas:
                    raise NotDeployed(chosen.name) from None

    def _less_busy(self, a: Replica, b: Replica) -> Replica:
        """Of two, the one with fewer calls in flight; a tie (both idle, as
        with one call at a time) goes to the replica of the last call, whose
        process is awake and warm: alternating at random cost one call at a
        time about 4% (bench replicas, p50 of one call, 2 replicas ÷ 1)."""
        if a.in_flight != b.in_flight:
            return a if a.in_flight < b.in_flight else b
        return b if b is self.last else a

    def ping(self, replica: Replica) -> Any:
        """A ping of `replica` (a ref to wait on), or None when no live
        sibling could take its calls: then there is nothing to decide."""
        now = self.clock()
        if replica.handle is None or not any(r.live(now) for r in self.replicas if r is not replica):
            return None
        if replica.ping is None or now - replica.pinged_at > PING_SHARED_S:
            replica.ping, replica.pinged_at = replica.handle.ping.remote(), now
        return replica.ping

    def dropped(self, replica: Replica, keep_handle: bool = False) -> bool:
        """`replica` dropped a call (it died, or is restarting): leave it out
        for a while and, unless `keep_handle` (Ray restarts the same actor),
        find the replicas again next time; whether a sibling is live to take
        the resend now."""
        now = self.clock()
        replica.down_until, replica.down_at = now + DOWN_S, now
        if not keep_handle:
            replica.handle = None
            self.stale = True
        return any(r.live(now) for r in self.replicas if r is not replica)
