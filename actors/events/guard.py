"""What every signed webhook is checked for besides its signature: a
timestamp within the window (a captured request replayed tomorrow is
refused) and a token not seen before within that window (a captured
request replayed now is refused). The clock is the caller's.

The replay memory is per process: an HTTP replica that did not see the
first copy accepts a replay, which then changes nothing, since events are
stored once by their id (actors/durable: delivery events)."""

from __future__ import annotations

from collections import OrderedDict

from actors.events.model import SignatureRefused, Verified

__all__ = ["MAX_EVENT_BODY_BYTES", "STALE_AFTER_S", "ReplayGuard", "check_size"]

# SendGrid posts batches of at most about 768 KB; Mailgun one event per request.
MAX_EVENT_BODY_BYTES = 2 * 1024 * 1024
# Mailgun's SDK refuses webhooks older than 15 minutes; SendGrid's guidance is
# "a few minutes". Five, either way of our clock (clocks differ).
STALE_AFTER_S = 300.0
# Tokens remembered at most: a flood of signed requests cannot grow memory.
MAX_TOKENS = 100_000


def check_size(size: int) -> None:
    if size > MAX_EVENT_BODY_BYTES:
        raise SignatureRefused("too_large", f"the body is {size} bytes; at most {MAX_EVENT_BODY_BYTES}")


class ReplayGuard:
    def __init__(self, stale_after_s: float = STALE_AFTER_S, max_tokens: int = MAX_TOKENS):
        self.stale_after_s = stale_after_s
        self._max_tokens = max_tokens
        self._seen: OrderedDict[str, float] = OrderedDict()   # token -> its timestamp, oldest first

    def check_fresh(self, timestamp: float, now: float) -> None:
        if abs(now - timestamp) > self.stale_after_s:
            raise SignatureRefused("stale", f"the signature's timestamp {timestamp:.0f} is {now - timestamp:+.0f} s "
                                   f"from now; at most {self.stale_after_s:.0f} s either way")

    def admit(self, verified: Verified, now: float) -> None:
        """Refuses a stale timestamp or a token seen already; remembers it
        otherwise. Call only with a verified signature: unsigned requests
        must not fill the memory."""
        self.check_fresh(verified.timestamp, now)
        self._forget(now)
        if verified.token in self._seen:
            raise SignatureRefused("replayed", "this signature's token was seen already: a replayed request")
        self._seen[verified.token] = verified.timestamp
        if len(self._seen) > self._max_tokens:
            self._seen.popitem(last=False)

    def _forget(self, now: float) -> None:
        # Tokens older than the window cannot come back: their timestamp would be stale.
        while self._seen:
            token, stamp = next(iter(self._seen.items()))
            if now - stamp <= self.stale_after_s:
                break
            del self._seen[token]
