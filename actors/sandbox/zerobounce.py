"""A local ZeroBounce v2 API.

    GET /v2/validate?api_key=&email=&ip_address=   -> {"address", "status", "sub_status", ...}
    GET /v2/getcredits?api_key=                    -> {"Credits": "N"}

The key is the `api_key` query parameter. A bad key (or no credits left) is
an error inside an HTTP 200, as ZeroBounce's clients describe it:
`{"error": "Invalid API key or your account ran out of credits"}` from
validate, `{"Credits": "-1"}` from getcredits. Statuses follow the address
rules in contacts.py:

    valid -> valid            catchall -> catch-all       spamtrap -> spamtrap
    invalid -> invalid / mailbox_not_found                abuse -> abuse
    unknown -> unknown / greylisted                       role -> do_not_mail / role_based
    disposable -> do_not_mail / disposable                toxic -> do_not_mail / toxic
    dnc -> do_not_mail / global_suppression

Unknown results cost no credit, the others one. Over `validations_per_10s`
validations in 10 s, validate answers 429 for `block_s` (ZeroBounce: 1 min).
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from aiohttp import web

from actors.sandbox.base import SlidingWindow, StandIn
from actors.sandbox.contacts import classify, is_free_domain

__all__ = ["ZeroBounceStandIn"]

BAD_KEY = "Invalid API key or your account ran out of credits"
STATUS = {"valid": ("valid", ""), "invalid": ("invalid", "mailbox_not_found"), "catchall": ("catch-all", ""),
          "unknown": ("unknown", "greylisted"), "spamtrap": ("spamtrap", ""), "abuse": ("abuse", ""),
          "role": ("do_not_mail", "role_based"), "disposable": ("do_not_mail", "disposable"),
          "toxic": ("do_not_mail", "toxic"), "dnc": ("do_not_mail", "global_suppression")}


class ZeroBounceStandIn(StandIn):
    name = "zerobounce"

    def __init__(self, *, api_key: str = "test-key", seed: int = 0, credits: int = 100_000,
                 validations_per_10s: int | None = 80_000, block_s: float = 60.0, clock: Any = time.time):
        super().__init__(api_key=api_key, seed=seed)
        self.initial_credits = credits
        self.credits = credits
        self.block_s = block_s
        self.clock = clock
        self._window = SlidingWindow(validations_per_10s, 10.0, clock)
        self._blocked_until = 0.0

    # --- the provider's formats ---------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [web.get("/v2/validate", self._validate), web.get("/v2/getcredits", self._getcredits)]

    def authorized(self, request: web.Request) -> bool:
        return request.query.get("api_key") == self.api_key

    def error(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    def rate_limited(self, retry_after_s: float | None) -> web.Response:
        return web.json_response({"error": "Too many requests: temporarily blocked"}, status=429)

    async def _faulted(self, request: web.Request) -> web.StreamResponse | None:
        response = await super()._faulted(request)
        if response is not None and response.status == 401:
            return self._bad_key(request)       # ZeroBounce says so inside an HTTP 200
        return response

    def _bad_key(self, request: web.Request) -> web.Response:
        if request.path == "/v2/getcredits":
            return web.json_response({"Credits": "-1"})
        return web.json_response({"error": BAD_KEY})

    def reset(self) -> None:
        self.credits = self.initial_credits
        self._window.reset()
        self._blocked_until = 0.0

    # --- handlers ------------------------------------------------------------------
    async def _getcredits(self, request: web.Request) -> web.Response:
        return web.json_response({"Credits": str(self.credits)})

    async def _validate(self, request: web.Request) -> web.Response:
        now = self.clock()
        if self._blocked_until > now:
            return self.rate_limited(None)
        if not self._window.allow():
            self._blocked_until = now + self.block_s
            return self.rate_limited(None)
        email = request.query.get("email")
        if not email:
            return self.error(400, "Missing parameter: email")
        if "ip_address" not in request.query:
            return self.error(400, "Missing parameter: ip_address (it may be blank)")
        if self.credits <= 0:
            return web.json_response({"error": BAD_KEY})
        verdict = classify(email)
        status, sub_status = STATUS[verdict]
        if status != "unknown":
            self.credits -= 1
        local, _, domain = email.rpartition("@")
        suggestion = email.replace("@gmial.com", "@gmail.com") if domain.lower() == "gmial.com" else ""
        return web.json_response({
            "address": email, "status": status, "sub_status": sub_status, "free_email": is_free_domain(email),
            "did_you_mean": suggestion or None, "account": local, "domain": domain, "domain_age_days": "9692",
            "smtp_provider": "", "mx_found": "true" if verdict != "invalid" else "false",
            "mx_record": f"mx.{domain}", "firstname": None, "lastname": None, "gender": None, "country": None,
            "region": None, "city": None, "zipcode": None,
            "processed_at": dt.datetime.fromtimestamp(now, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3],
        })
