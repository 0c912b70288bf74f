"""A local NeverBounce v4 API.

    GET|POST /v4/single/check?key=&email=   -> {"status": "success", "result": "valid", "flags": [...], ...}
    GET|POST /v4/account/info?key=          -> {"status": "success", "credits": N, "job_counts": {...}, ...}

Application errors come back as HTTP 200 with `status`, as NeverBounce
documents: auth_failure (the message repeats the key, as NeverBounce's does),
bad_referrer (with `referrer_locked`), throttle_triggered (a 429 fault, or
over `checks_per_s`), temp_unavail (a down or failing stand-in),
general_failure (a missing parameter). Results follow the address rules in
contacts.py: valid, invalid, disposable, catchall, unknown as
named; a role address is valid with the role_account flag; spamtrap, toxic
and do-not-contact addresses are invalid; abuse is valid.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from actors.sandbox.base import SlidingWindow, StandIn
from actors.sandbox.contacts import classify, is_free_domain

__all__ = ["NeverBounceStandIn"]

RESULT = {"valid": "valid", "invalid": "invalid", "disposable": "disposable", "catchall": "catchall",
          "unknown": "unknown", "role": "valid", "abuse": "valid", "spamtrap": "invalid", "toxic": "invalid",
          "dnc": "invalid"}
MESSAGES = {
    "general_failure": "Something went wrong with the request",
    "temp_unavail": "An outage or error occurred that is preventing us from processing this request; "
                    "try again in a few moments.",
    "throttle_triggered": "Too many requests in a short amount of time; try again shortly or adjust your "
                          "request rate.",
    "bad_referrer": "The referrer for this request is not trusted",
}
PATHS = {"check": ("/v4/single/check", "/v4.2/single/check"), "account": ("/v4/account/info", "/v4.2/account/info")}


class NeverBounceStandIn(StandIn):
    name = "neverbounce"

    def __init__(self, *, api_key: str = "test-key", seed: int = 0, credits: int = 100_000,
                 checks_per_s: int | None = None, clock: Any = time.time):
        super().__init__(api_key=api_key, seed=seed)
        self.initial_credits = credits
        self.credits = credits
        self.referrer_locked = False
        self.clock = clock
        self._window = SlidingWindow(checks_per_s, 1.0, clock)

    # --- the provider's formats ---------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        out: list[web.RouteDef] = []
        for path in PATHS["check"]:
            out += [web.get(path, self._check), web.post(path, self._check)]
        for path in PATHS["account"]:
            out += [web.get(path, self._account), web.post(path, self._account)]
        return out

    async def _params(self, request: web.Request) -> dict[str, str]:
        params = dict(request.query)
        if request.method == "POST" and request.content_type in ("application/x-www-form-urlencoded",
                                                                 "multipart/form-data"):
            params.update({k: str(v) for k, v in (await request.post()).items()})
        elif request.method == "POST" and request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                body = None
            if isinstance(body, dict):
                params.update({k: str(v) for k, v in body.items()})
        return params

    def authorized(self, request: web.Request) -> bool:
        return True     # the key is checked in _faulted, which answers a wrong one with an HTTP-200 auth_failure

    def _app_error(self, status: str, message: str | None = None) -> web.Response:
        return web.json_response({"status": status, "message": message or MESSAGES.get(status, status),
                                  "execution_time": 3})

    def error(self, status: int, message: str) -> web.Response:
        if status in (401, 403):
            return self._app_error("auth_failure", "Invalid API key")
        if status >= 500:
            return self._app_error("temp_unavail")
        return self._app_error("general_failure", message)

    def rate_limited(self, retry_after_s: float | None) -> web.Response:
        return self._app_error("throttle_triggered")

    async def _faulted(self, request: web.Request) -> web.StreamResponse | None:
        response = await super()._faulted(request)
        if response is not None:
            return response
        key = (await self._params(request)).get("key", "")
        if key != self.api_key:
            return self._auth_failure(key)
        return None

    def _auth_failure(self, key: str) -> web.Response:
        # NeverBounce repeats the key it was given: adapters must not pass it on.
        return self._app_error("auth_failure", f"Invalid API key '{key}'")

    def reset(self) -> None:
        self.credits = self.initial_credits
        self.referrer_locked = False
        self._window.reset()

    # --- handlers ------------------------------------------------------------------
    async def _account(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "success", "billing_type": "default", "credits": self.credits,
                                  "free_credits_used": 0, "free_credits_remaining": 0,
                                  "job_counts": {"completed": 0, "under_review": 0, "queued": 0, "processing": 0},
                                  "execution_time": 5})

    async def _check(self, request: web.Request) -> web.Response:
        if self.referrer_locked:
            return self._app_error("bad_referrer")
        if not self._window.allow():
            return self._app_error("throttle_triggered")
        email = (await self._params(request)).get("email")
        if not email:
            return self._app_error("general_failure", "Missing required parameter 'email'")
        if self.credits <= 0:
            return self._app_error("general_failure", "Insufficient credit balance")
        self.credits -= 1
        verdict = classify(email)
        flags = ["has_dns", "has_dns_mx"] if verdict != "invalid" else ["has_dns"]
        if verdict in ("valid", "role", "abuse", "catchall"):
            flags.append("smtp_connectable")
        if is_free_domain(email):
            flags.append("free_email_host")
        if verdict == "role":
            flags.append("role_account")
        if verdict == "disposable":
            flags.append("disposable_email")
        suggestion = email.replace("@gmial.com", "@gmail.com") if email.lower().endswith("@gmial.com") else ""
        return web.json_response({"status": "success", "result": RESULT[verdict], "flags": flags,
                                  "suggested_correction": suggestion, "execution_time": 42})
