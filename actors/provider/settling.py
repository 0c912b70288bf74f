"""Settling a keyed send whose outcome nobody saw: a timeout or a crash left
its journal entry `started` or `unknown`, or a router could not see the
attempt's answer and asks (`ProviderActor.resolve`).

    resolve(key) --> a send of it in flight here: waited for, its outcome is the answer
                     delivered here, not journaled yet: delivered
                     its last claim here ended before anything was sent: not_delivered
                     the journal says: nothing or failed -> not_delivered; delivered -> delivered
                     started or unknown -> settle_claimed
    settle_claimed --> the adapter's reconcile(): the provider is asked
                       no reconcile, but the provider drops repeats itself: sent again
                       neither: unknown, for an operator (never sent again blindly)

The key is claimed here (journal.Claims) while it is settled, so a request
for it meanwhile waits for the answer instead of settling too: a late "not
delivered" would overwrite a delivery made in between.
"""

from __future__ import annotations

import asyncio

from actors.adapters.base import Adapter
from actors.clock import SYSTEM_CLOCK, Clock
from actors.durable import StoreUnavailable
from actors.durable.retry import within
from actors.errors import ProviderError
from actors.messages import CallContext, Resolution
from actors.payloads import Payload
from actors.provider.journal import Claims, DeliveryJournal, OutcomeWriter
from actors.provider.journaled_send import Answers, JournaledSend
from actors.redaction import Redactor
from actors.specs import ProviderSpec

__all__ = ["Settling"]


class Settling:
    def __init__(self, spec: ProviderSpec, adapter: Adapter, sender: JournaledSend, journal: DeliveryJournal,
                 outcomes: OutcomeWriter, claims: Claims, answers: Answers, redact: Redactor,
                 clock: Clock = SYSTEM_CLOCK):
        self.spec = spec
        self.adapter = adapter
        self._sender = sender
        self._journal = journal
        self._outcomes = outcomes
        self._claims = claims
        self._answers = answers
        self._redact = redact
        self._clock = clock

    async def resolve(self, method: str, payload: Payload, ctx: CallContext) -> Resolution:
        """Was the keyed request delivered here? Asked by a router after an
        attempt whose outcome it could not see (a timeout, a crash). The key
        is claimed meanwhile, so a concurrent request waits for this answer
        instead of settling too (a late "not delivered" would overwrite a
        delivery made in between)."""
        key = ctx.idempotency_key
        assert key is not None, "resolve needs an idempotency key"
        last = await self._claims.wait_for(key)
        if last is not None and last.ok:
            return Resolution(state="delivered", value=last.value)
        if key in self._outcomes.delivered:
            return Resolution(state="delivered", value=self._outcomes.delivered[key].value)
        if self._claims.unsent(key):
            # The attempt the router asks about stopped before the adapter was
            # called; earlier sends of the key were settled before it was made.
            return Resolution(state="not_delivered")
        [claim] = self._claims.take([key]).values()
        resolution = Resolution(state="unknown", error="settling was cut off")
        try:
            deadline = self._clock.monotonic() + ctx.timeout_s
            entry = await within(deadline, lambda: self._journal.get(key), sleep=self._clock.sleep,
                                 clock=self._clock.monotonic)
            if entry is None or entry.state == "failed":
                resolution = Resolution(state="not_delivered")
            elif entry.state == "delivered":
                resolution = Resolution(state="delivered", value=entry.value)
            else:
                resolution = await self.settle_claimed(method, payload, ctx)
            return resolution
        except StoreUnavailable as exc:
            resolution = Resolution(state="unknown", error=self._redact(f"its journal cannot be read now: {exc}"))
            return resolution
        finally:
            self._claims.release({key: claim}, {}, self._answers.settled(resolution))

    async def settle_claimed(self, method: str, payload: Payload, ctx: CallContext) -> Resolution:
        """Settles a send the journal left `started` or `unknown`, its key
        claimed here by the caller."""
        key = ctx.idempotency_key
        assert key is not None
        try:
            value = await asyncio.wait_for(self.adapter.reconcile(method, payload, ctx), ctx.timeout_s)
        except NotImplementedError:
            if method in self.adapter.resends_deduplicated:
                # The provider drops a repeat of the same request itself.
                [reply] = await self._sender.send([(method, payload, ctx)], {}, journal_first=True)
                if reply.ok:
                    return Resolution(state="delivered", value=reply.value)
                return Resolution(state="unknown" if reply.maybe_delivered else "not_delivered", error=reply.error)
            return Resolution(state="unknown", error=f"the {self.spec.adapter} API offers no way to look a request up")
        except (ProviderError, asyncio.TimeoutError) as exc:
            return Resolution(state="unknown", error=self._redact(f"cannot ask {self.spec.name} now: {exc}"))
        if value is None:
            await self._outcomes.write([(ctx, method, "failed", None, "reconciled: not delivered")], {})
            return Resolution(state="not_delivered")
        await self._outcomes.write([(ctx, method, "delivered", value, None)],
                                   {key: self._answers.delivered(value)})
        return Resolution(state="delivered", value=value)
