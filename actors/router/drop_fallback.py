"""The drop fallback, wired (opt-in per capability: delivery.drop_fallback;
the decision is policy/drop_fallback.py): a message a provider accepted and
then dropped for its own reasons is sent again, once, through the next
provider, with the same Message-ID.

- `keep`: after a send is served, the message is kept in the store (the
  gateway keeps no payloads otherwise) with what its events will name;
- `handle`: each round of delivery events (delivery_health.py reads them),
  a drop that qualifies finds its message, marks it re-sent in the store (a
  conditional update: one router wins, once), and sends it through the
  router without the provider that dropped it, under the key
  `resend-<request id>`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import msgspec

from actors.clock import Clock
from actors.durable.store import SentMessage, StoredEvent
from actors.errors import StoreUnavailable
from actors.events.matching import refs_for
from actors.events.model import RequestRefs, aicmo_ref
from actors.messages import InvokeResult
from actors.payloads import SendEmail
from actors.policy.drop_fallback import DropFallbackPolicy, resend_wanted

__all__ = ["DropFallback"]

log = logging.getLogger("aicmo.drop_fallback")
_encode = msgspec.msgpack.encode
_decode = msgspec.msgpack.Decoder(SendEmail).decode
Resend = Callable[[SendEmail, str, Sequence[str]], Awaitable[InvokeResult]]


class DropFallback:
    def __init__(self, capability: str, policy: DropFallbackPolicy, store: Callable[[], Any], clock: Clock):
        self.capability = capability
        self.policy = policy
        self._store = store
        self._clock = clock
        self._handled: set[tuple[str, str]] = set()   # (provider, event id) seen by this router
        self.resent: list[tuple[str, InvokeResult]] = []   # (original request id, the re-send's result)

    async def keep(self, payload: Any, result: InvokeResult) -> None:
        if not self.policy.enabled or not result.ok or not isinstance(payload, SendEmail) or result.provider is None:
            return
        value = result.value if isinstance(result.value, dict) else {}
        rfc = value.get("rfc_message_id")
        key_hash = refs_for(None, result.idempotency_key).key_hashes[0] if result.idempotency_key else None
        try:
            await self._store().sent_put([SentMessage(
                capability=self.capability, request_id=result.request_id, provider=result.provider,
                payload=_encode(payload), sent_at=self._clock.time(), key_hash=key_hash,
                message_ref=aicmo_ref(rfc), rfc_message_id=rfc)])
        except StoreUnavailable as exc:   # the send stands; only its fallback is lost
            log.warning("%s: message %s not kept for the drop fallback: %s", self.capability, result.request_id, exc)

    async def handle(self, stored: Sequence[StoredEvent], resend: Resend) -> int:
        """Re-sends what qualifies among `stored`; how many it re-sent."""
        if not self.policy.enabled:
            return 0
        now, done = self._clock.time(), 0
        for s in stored:
            seen = (s.provider, s.event.event_id)
            if seen in self._handled or not resend_wanted(s.event, now, self.policy, already_resent=False):
                continue
            self._handled.add(seen)
            e = s.event
            refs = RequestRefs(request_ids=(e.request_id,) if e.request_id else (),
                               key_hashes=(e.key_hash,) if e.key_hash else (),
                               message_refs=(ref,) if (ref := aicmo_ref(e.rfc_message_id)) else ())
            if not refs:
                continue
            sent = [m for m in await self._store().sent_find(self.capability, refs) if m.provider == s.provider]
            if not sent or not await self._store().sent_mark_resent(self.capability, sent[0].request_id, now):
                continue
            message = sent[0]
            payload = _decode(message.payload)
            if message.rfc_message_id:
                # The same Message-ID: receiving systems can tell it is the same message.
                payload = msgspec.structs.replace(payload, headers={**payload.headers,
                                                                    "Message-ID": message.rfc_message_id})
            result = await resend(payload, "resend-" + hashlib.sha256(message.request_id.encode()).hexdigest()[:32],
                                  [s.provider])
            log.warning("%s: %s dropped request %s; re-sent through %s: %s", self.capability, s.provider,
                        message.request_id, result.provider, "ok" if result.ok else result.error)
            self.resent.append((message.request_id, result))
            done += 1
        return done
