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
from dataclasses import dataclass

from actors.payloads import METHODS
from actors.policy.budget import RetryBudget

__all__ = ["DEFAULT_WINDOW_S", "ResendPolicy", "client_key", "resend_budget"]

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


def resend_budget() -> RetryBudget:
    """How many calls may be sent again on a guess: a silent call whose
    router did not answer a ping goes to a sibling replica only while the
    resends of the last 10 s stay under 2 a second plus 5% of the calls
    first sent in that window (Finagle's RetryBudget, the one the router's
    fallbacks use: actors/policy/budget.py).

    A ping is a guess: an overloaded router is late with pings as well as
    calls, and every call sent again to its sibling is more load on a
    cluster already short of it, which makes more calls late (a resend
    storm). The floor lets a router's death move its calls at once (about
    a quarter of a second of one router's share of the traffic); past the
    budget, a silent call waits for its own router's answer, or for Ray to
    drop it. Every resend counts against the budget, a dropped call's too,
    though a drop is always sent again (it cannot be answered otherwise)."""
    return RetryBudget(percent=5.0, min_per_s=2.0, ttl_s=10.0)


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
