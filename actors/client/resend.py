"""When the client sends a call again, as pure code (no Ray, no clock).

A call the router dropped (it died, or is restarting: Ray raises
ActorUnavailableError or RayActorError) is sent again with the same
idempotency key after a short, growing pause, for as long as the call's
deadline leaves time for an answer. The key makes the resend safe: the
router returns the first result of a key it has seen, and settles a send
whose outcome a crash left unknown before it sends anything.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, field

from actors.payloads import METHODS

__all__ = ["DEFAULT_WINDOW_S", "ResendBudget", "ResendPolicy", "client_key"]

# Without a deadline from the caller, a dropped call is sent again for up
# to this long after the first send: the config's default deadline.
DEFAULT_WINDOW_S = 30.0


@dataclass(frozen=True)
class ResendPolicy:
    first_delay_s: float = 0.05
    factor: float = 2.0
    max_delay_s: float = 1.0
    min_left_s: float = 0.05        # a resend needs at least this much of the deadline left after its pause

    def delay_s(self, resends: int, remaining_s: float) -> float | None:
        """The pause before resend number `resends + 1`, or None: no time left for one."""
        delay = min(self.max_delay_s, self.first_delay_s * self.factor ** resends)
        return delay if remaining_s - delay >= self.min_left_s else None


@dataclass
class ResendBudget:
    """How many calls may be sent again on a guess: a silent call whose
    router did not answer a ping goes to a sibling replica only while the
    resends of the last `window_s` stay under `floor_per_s * window_s` plus
    `share` of the calls first sent in that window (Finagle's RetryBudget).

    A ping is a guess: an overloaded router is late with pings as well as
    calls, and every call sent again to its sibling is more load on a
    cluster already short of it, which makes more calls late (a resend
    storm). The floor lets a router's death move its calls at once (about
    a quarter of a second of one router's share of the traffic); past the
    budget, a silent call waits for its own router's answer, or for Ray to
    drop it. Every resend counts against the budget, a dropped call's too,
    though a drop is always sent again (it cannot be answered otherwise)."""

    window_s: float = 10.0
    share: float = 0.05
    floor_per_s: float = 2.0
    _sends: deque[float] = field(default_factory=deque, repr=False)
    _resends: deque[float] = field(default_factory=deque, repr=False)

    def sent(self, now: float) -> None:
        """A call's first send."""
        self._sends.append(now)
        self._trim(self._sends, now)

    def resent(self, now: float) -> None:
        self._resends.append(now)
        self._trim(self._resends, now)

    def spare(self, now: float) -> bool:
        """Whether one more call may be sent again on a guess now."""
        self._trim(self._sends, now)
        self._trim(self._resends, now)
        return len(self._resends) < self.floor_per_s * self.window_s + self.share * len(self._sends)

    def _trim(self, times: deque[float], now: float) -> None:
        while times and times[0] <= now - self.window_s:
            try:
                times.popleft()
            except IndexError:   # another thread trimmed it first
                break


def client_key(capability: str, method: str, key: str | None, dry_run: bool | None) -> str | None:
    """The idempotency key a call is sent with. A send (a method that is not
    idempotent) always carries one, made here when the caller gave none, so
    that sending it again after a dropped call cannot deliver it twice. Reads
    and upserts may simply be sent again; a dry run delivers nothing."""
    if key is not None or dry_run:
        return key
    spec = METHODS.get(capability, {}).get(method) if isinstance(method, str) else None
    if spec is None or spec.idempotent:
        return None
    return f"client-{uuid.uuid4().hex}"
