"""Delivery events from the email stand-ins: after accepting a message, a
stand-in posts the events its provider would (SendGrid's Event Webhook,
Mailgun's webhooks), signed as that provider signs them, to a configured
URL, with an outcome drawn from a configurable mix:

    delivered   accepted, then delivered
    deferred    accepted, deferred, then delivered
    bounced     accepted, then a hard bounce (the recipient's address)
    dropped     the provider drops it for its own reasons (its policy)

A recipient whose address starts with `bounce` always bounces hard, so a
test can pick its bounce. Set with the constructor or, at run time,
`POST /_sandbox/events {"url": ..., "mix": {"dropped": 0.5, ...}}`.
The poster retries a refused post (5xx, 429, a connection error) with
backoff, as the providers do; a 4xx other than 429 is not retried.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import ClientError, ClientSession, ClientTimeout, web

__all__ = ["OUTCOMES", "EventPoster", "EventsSettings"]

log = logging.getLogger("aicmo.sandbox.events")
OUTCOMES = ("delivered", "deferred", "bounced", "dropped")


@dataclass
class EventsSettings:
    url: str | None = None                     # where to post; None: no events
    mix: dict[str, float] = field(default_factory=lambda: {"delivered": 1.0})
    delay_s: float = 0.0                       # between acceptance and the first post
    tries: int = 6

    def update(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if key not in ("url", "mix", "delay_s", "tries"):
                raise KeyError(f"unknown events setting {key!r}; known: url, mix, delay_s, tries")
            if key == "mix":
                unknown = set(value) - set(OUTCOMES)
                if unknown or any(float(w) < 0 for w in value.values()) or not sum(value.values()):
                    raise ValueError(f"mix: weights >= 0 over {', '.join(OUTCOMES)}, not all 0; got {value}")
            setattr(self, key, value)


class EventPoster:
    """Draws outcomes and posts signed bodies; the stand-in says what to post."""

    def __init__(self, settings: EventsSettings, rng: random.Random):
        self.settings = settings
        self._rng = rng
        self._tasks: set[asyncio.Task[None]] = set()
        self.posted = 0            # posts answered 2xx
        self.failed = 0            # posts given up on
        self.outcomes: dict[str, int] = {o: 0 for o in OUTCOMES}

    def outcome(self, recipient: str) -> str:
        if recipient.lower().startswith("bounce"):
            choice = "bounced"
        else:
            weights = [float(self.settings.mix.get(o, 0.0)) for o in OUTCOMES]
            choice = self._rng.choices(OUTCOMES, weights)[0]
        self.outcomes[choice] += 1
        return choice

    def post_later(self, posts: list[tuple[bytes, dict[str, str]]]) -> None:
        """Posts each (body, headers) in order, in the background."""
        if not self.settings.url or not posts:
            return
        task = asyncio.ensure_future(self._post_all(self.settings.url, posts))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_all(self, url: str, posts: list[tuple[bytes, dict[str, str]]]) -> None:
        if self.settings.delay_s:
            await asyncio.sleep(self.settings.delay_s)
        async with ClientSession(timeout=ClientTimeout(total=10)) as session:
            for body, headers in posts:
                await self._post(session, url, body, headers)

    async def _post(self, session: ClientSession, url: str, body: bytes, headers: dict[str, str]) -> None:
        for attempt in range(self.settings.tries):
            try:
                async with session.post(url, data=body, headers={"Content-Type": "application/json",
                                                                 **headers}) as answer:
                    if answer.status < 300:
                        self.posted += 1
                        return
                    if answer.status < 500 and answer.status != 429:
                        log.warning("events post to %s refused: %s", url, answer.status)
                        self.failed += 1
                        return
                    wait = float(answer.headers.get("Retry-After", 0) or 0)
            except (ClientError, asyncio.TimeoutError, OSError):
                wait = 0.0
            await asyncio.sleep(max(wait, 0.1 * 2 ** attempt))
        self.failed += 1

    def stats(self) -> dict[str, Any]:
        return {**asdict(self.settings), "posted": self.posted, "failed": self.failed, "outcomes": self.outcomes,
                "pending": len(self._tasks)}

    async def handle(self, request: web.Request) -> web.Response:
        """GET/POST /_sandbox/events: the settings and counts; POST changes them."""
        if request.method == "POST":
            try:
                self.settings.update(await request.json())
            except (KeyError, ValueError, TypeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.stats())
