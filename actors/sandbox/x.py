"""An X API v2 stand-in: `POST /2/tweets` and `GET /2/users/me`.

    POST /2/tweets   Bearer user token; `{"text": ...}`; 201
                     `{"data": {"id", "text"}}`. Too long (X's weighted
                     count over 280): 400 invalid-request problem; the same
                     text again: 403 "You are not allowed to create a Tweet
                     with duplicate content."
    GET /2/users/me  `{"data": {"id", "name", "username"}}`
    every response   `x-rate-limit-limit/-remaining/-reset` (a 15-minute
                     window of `window_limit` requests per endpoint); POST
                     /2/tweets also `x-user-limit-24hour-*` and
                     `x-app-limit-24hour-*`.
    errors           `application/problem+json` `{title, type, detail, status}`;
                     a 429 (the window used up, or the throttle knob) says
                     remaining 0 and the reset epoch, and no Retry-After.

`tweets` keeps every post (id -> text).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from actors.adapters.social.x import weighted_length
from actors.sandbox.base import StandIn

__all__ = ["XStandIn"]

PROBLEM = "application/problem+json"


class XStandIn(StandIn):
    name = "x"

    def __init__(self, *, api_key: str = "x-user-token", window_limit: int = 100, window_s: float = 900.0,
                 day_limit: int = 10_000, clock: Callable[[], float] = time.time, seed: int = 0):
        super().__init__(api_key=api_key, seed=seed)
        self.window_limit = window_limit
        self.window_s = window_s
        self.day_limit = day_limit
        self.clock = clock
        self.tweets: dict[str, str] = {}
        self._windows: dict[str, tuple[float, int]] = {}  # endpoint -> (window start, requests in it)
        self._day: tuple[float, int] = (0.0, 0)
        self._next_id = 1_890_000_000_000_000_000

    def adapter_settings(self, **over: Any) -> dict[str, Any]:
        """Settings for the `x` adapter that talk to this stand-in."""
        return {"base_url": self.base_url, "access_token": self.api_key, **over}

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/2/tweets", self._create), web.get("/2/users/me", self._me)]

    def reset(self) -> None:
        self.tweets.clear()
        self._windows.clear()
        self._day = (0.0, 0)

    # --- X's shapes ------------------------------------------------------------
    def _problem(self, status: int, title: str, detail: str, type_: str = "about:blank",
                 headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
        body = {"title": title, "detail": detail, "type": type_, "status": status, **extra}
        return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM, headers=headers or {})

    def _limit_headers(self, endpoint: str, *, count: bool, exhausted_until: float | None = None) -> dict[str, str]:
        now = self.clock()
        start, used = self._windows.get(endpoint, (now, 0))
        if now >= start + self.window_s:
            start, used = now, 0
        if count:
            used += 1
        self._windows[endpoint] = (start, used)
        reset, remaining = start + self.window_s, max(0, self.window_limit - used)
        if exhausted_until is not None:
            reset, remaining = exhausted_until, 0
        headers = {"x-rate-limit-limit": str(self.window_limit), "x-rate-limit-remaining": str(remaining),
                   "x-rate-limit-reset": str(int(reset))}
        if endpoint == "/2/tweets":
            day_start, day_used = self._day
            if now >= day_start + 86400:
                day_start, day_used = now, 0
            if count:
                day_used += 1
            self._day = (day_start, day_used)
            for who in ("user", "app"):
                headers[f"x-{who}-limit-24hour-limit"] = str(self.day_limit)
                headers[f"x-{who}-limit-24hour-remaining"] = str(max(0, self.day_limit - day_used))
                headers[f"x-{who}-limit-24hour-reset"] = str(int(day_start + 86400))
        return headers

    def error(self, status: int, message: str) -> web.Response:
        titles = {401: "Unauthorized", 403: "Forbidden", 500: "Internal Server Error", 503: "Service Unavailable"}
        title = titles.get(status, "Error")
        detail = "Unauthorized" if status == 401 else message
        return self._problem(status, title, detail, headers=self._limit_headers("/2/tweets", count=False))

    def rate_limited(self, retry_after_s: float | None) -> web.Response:
        until = self.faults.throttle_until or self.clock() + self.window_s
        return self._too_many(until)

    def _too_many(self, until: float) -> web.Response:
        return self._problem(429, "Too Many Requests", "Too Many Requests",
                             "https://api.x.com/2/problems/rate-limit-exceeded",
                             headers=self._limit_headers("/2/tweets", count=False, exhausted_until=until))

    # --- handlers --------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        start, used = self._windows.get("/2/tweets", (self.clock(), 0))
        if used >= self.window_limit and self.clock() < start + self.window_s:
            return self._too_many(start + self.window_s)
        headers = self._limit_headers("/2/tweets", count=True)
        try:
            body = await request.json()
        except ValueError:
            body = None
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            return self._problem(400, "Invalid Request", "One or more parameters to your request was invalid.",
                                 "https://api.x.com/2/problems/invalid-request", headers=headers,
                                 errors=[{"message": "$.text is required"}])
        if weighted_length(text) > 280:
            return self._problem(400, "Invalid Request", "One or more parameters to your request was invalid.",
                                 "https://api.x.com/2/problems/invalid-request", headers=headers,
                                 errors=[{"parameters": {"text": [text[:40]]},
                                          "message": "Your Tweet text is too long."}])
        if text in self.tweets.values():
            return self._problem(403, "Forbidden", "You are not allowed to create a Tweet with duplicate content.",
                                 headers=headers)
        self._next_id += 1
        tweet_id = str(self._next_id)
        self.tweets[tweet_id] = text
        return web.json_response({"data": {"id": tweet_id, "text": text,
                                           "edit_history_tweet_ids": [tweet_id]}}, status=201, headers=headers)

    async def _me(self, request: web.Request) -> web.Response:
        headers = self._limit_headers("/2/users/me", count=True)
        return web.json_response({"data": {"id": "2244994945", "name": "Ann Example", "username": "ann_example"}},
                                 headers=headers)
