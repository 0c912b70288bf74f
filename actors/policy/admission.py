"""Admission: when a router refuses new requests because it cannot keep up,
as pure code (CoDel's rule, RFC 8289, on the router's own queue).

A router's queue is its event loop: every request in flight is a task, and
a request that arrives waits behind the ready ones. The router measures
that wait (its loop's lag) as each request arrives. A lag above `target_s`
now and then is a burst, which the loop clears by itself; a lag that has not
once dropped below the target for `interval_s` is a standing queue: the
router is given more than it can do, and every request admitted makes every
other one later (an open-loop caller's queue then grows without bound,
`make soak` showed it). From then on, while more than `min_in_flight` are in
flight, a new request is answered at once with `rate_limited` and a
retry-after, before anything is claimed or sent; the first request that
finds the lag below the target again ends it.

Ray Serve bounds the same queue by its length (`max_queued_requests`); a
length says little here, where one request waits on a 5 ms provider and the
next on a 10 s one, while the lag says whether the router itself is behind.

Off by default, as Serve's bound is: a refusal is a failure every caller
must handle (send again after the retry-after), and a caller that waits for
each answer (a driver's loop, a worker pool) slows down by itself as the
router does. Turn it on (`policy.routing.admission.enabled`) where callers
send whatever the router's pace (a webhook firehose, a queue consumer with
many workers, `make soak`): there the queue has no other bound.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Admission", "AdmissionPolicy", "Overloaded"]


@dataclass(frozen=True)
class AdmissionPolicy:
    enabled: bool = False
    # CoDel's target is 5 ms of a link's queue; a router's loop runs
    # provider replies, store round trips and a few ms of Python per
    # request, and at 80% load its lag stays under 20 ms here.
    target_s: float = 0.05
    interval_s: float = 1.0
    # Fewer in flight than this, and the lag is not this router's queue
    # (the machine is busy elsewhere, a GC pause): refusing would not help.
    min_in_flight: int = 16


@dataclass(frozen=True)
class Overloaded:
    """A request refused: the loop's lag has stayed above the target since `since_s` ago."""

    lag_s: float
    since_s: float
    in_flight: int
    retry_after_s: float


class Admission:
    def __init__(self, policy: AdmissionPolicy = AdmissionPolicy()):
        self.policy = policy
        self._above_since: float | None = None   # when the lag last went above the target
        self._seen_at = float("-inf")             # the last arrival
        self.refused = 0

    def arrived(self, now: float, lag_s: float, in_flight: int) -> Overloaded | None:
        """A request that found the loop `lag_s` behind, with `in_flight`
        others being served: None to admit it, or why it is refused."""
        p = self.policy
        quiet = now - self._seen_at > p.interval_s   # no arrival for an interval: nothing known of the queue
        self._seen_at = now
        if lag_s < p.target_s:
            self._above_since = None
            return None
        if self._above_since is None or quiet:
            self._above_since = now
        since = now - self._above_since
        if not p.enabled or since < p.interval_s or in_flight < p.min_in_flight:
            return None
        self.refused += 1
        return Overloaded(lag_s=lag_s, since_s=since, in_flight=in_flight, retry_after_s=p.interval_s)

    def overloaded(self, now: float) -> bool:
        """Whether a request arriving now would be refused on the lag alone (status)."""
        p = self.policy
        return (p.enabled and self._above_since is not None and now - self._seen_at <= p.interval_s
                and now - self._above_since >= p.interval_s)
