"""A local Apollo People Enrichment API.

    POST /api/v1/people/match   (and the older /v1/people/match)
         inputs as query parameters (current docs) or a JSON body (older examples)
         -> {"person": {...}} for someone it knows, {"person": null} otherwise
    GET  /api/v1/auth/health    -> {"healthy": true, "is_logged_in": <key accepted>}

The key goes in the X-Api-Key header. Requests are counted in fixed windows
aligned to the clock (minute, hour, day), every answer carries Apollo's
x-rate-limit-* / x-*-usage / x-*-requests-left headers, and a used-up window
answers 429 with Apollo's message naming it ("... times per minute").
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from aiohttp import web

from actors.sandbox.base import StandIn
from actors.sandbox.contacts import PEOPLE, find_person

__all__ = ["ApolloStandIn"]

HEALTH_PATHS = ("/api/v1/auth/health", "/v1/auth/health")
_WINDOWS = (("minute", "minute", 60), ("hourly", "hour", 3600), ("daily", "day", 86400))


class ApolloStandIn(StandIn):
    name = "apollo"

    def __init__(self, *, api_key: str = "test-key", seed: int = 0, people: list[dict[str, Any]] | None = None,
                 per_minute: int | None = 200, per_hour: int | None = 2000, per_day: int | None = 6000,
                 clock: Any = time.time):
        super().__init__(api_key=api_key, seed=seed)
        self.people = [dict(p) for p in (PEOPLE if people is None else people)]
        self.limits = {"minute": per_minute, "hourly": per_hour, "daily": per_day}
        self.clock = clock
        self._used: dict[str, tuple[int, int]] = {}    # window -> (bucket, requests counted in it)

    # --- the provider's formats ---------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/api/v1/people/match", self._match),
            web.post("/v1/people/match", self._match),
            *(web.get(path, self._health) for path in HEALTH_PATHS),
        ]

    def authorized(self, request: web.Request) -> bool:
        if request.path in HEALTH_PATHS:
            return True              # health answers for any key; it says whether the key logs in
        return request.headers.get("X-Api-Key") == self.api_key

    def error(self, status: int, message: str) -> web.Response:
        if status == 401:
            message = "Invalid access credentials."
        return web.json_response({"error": message}, status=status)

    def rate_limited(self, retry_after_s: float | None) -> web.Response:
        return self._limited("minute", retry_after_s)

    def reset(self) -> None:
        self._used.clear()

    # --- rate limits -----------------------------------------------------------------
    def _count(self, window: str) -> int:
        bucket, used = self._used.get(window, (-1, 0))
        period = dict((w, p) for w, _, p in _WINDOWS)[window]
        return used if bucket == int(self.clock() // period) else 0

    def _headers(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for window, _, _ in _WINDOWS:
            limit = self.limits[window]
            if limit is None:
                continue
            used = self._count(window)
            headers[f"x-rate-limit-{window}"] = str(limit)
            headers[f"x-{window}-usage"] = str(used)
            headers[f"x-{window}-requests-left"] = str(max(0, limit - used))
        return headers

    def _limited(self, window: str, retry_after_s: float | None = None) -> web.Response:
        unit = dict((w, u) for w, u, _ in _WINDOWS)[window]
        limit = self.limits.get(window) or 0
        headers = self._headers()
        headers[f"x-{window}-requests-left"] = "0"
        if retry_after_s is not None:
            headers["Retry-After"] = str(int(retry_after_s))
        message = (f"The maximum number of api calls allowed for api/v1/people/match is {limit} times per {unit}. "
                   "Please upgrade your plan from https://app.apollo.io/#/settings/plans/upgrade.")
        return web.json_response({"message": message}, status=429, headers=headers)

    def _admit(self) -> web.Response | None:
        now = self.clock()
        for window, _, _period in reversed(_WINDOWS):       # the longest used-up window is the one to report
            limit = self.limits[window]
            if limit is not None and self._count(window) >= limit:
                return self._limited(window)
        for window, _, period in _WINDOWS:
            self._used[window] = (int(now // period), self._count(window) + 1)
        return None

    # --- handlers ------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        logged_in = request.headers.get("X-Api-Key") == self.api_key and not self.faults.reject_auth
        return web.json_response({"healthy": True, "is_logged_in": logged_in})

    async def _match(self, request: web.Request) -> web.Response:
        limited = self._admit()
        if limited is not None:
            return limited
        inputs: dict[str, Any] = dict(request.query)
        raw = await request.read()
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                return web.json_response({"error": "The request body is not valid JSON"}, status=400,
                                         headers=self._headers())
            if isinstance(body, dict):
                inputs.update(body)
        identifying = ("email", "first_name", "last_name", "name", "domain", "organization_name", "id",
                       "linkedin_url", "hashed_email")
        if not any(inputs.get(k) for k in identifying):
            return web.json_response({"error": "Provide at least one parameter that identifies the person"},
                                     status=422, headers=self._headers())
        first, last = inputs.get("first_name"), inputs.get("last_name")
        if not (first and last) and isinstance(inputs.get("name"), str) and " " in inputs["name"]:
            first, last = inputs["name"].split(" ", 1)
        person = find_person(self.people, email=inputs.get("email"), first_name=first, last_name=last,
                             domain=inputs.get("domain"))
        return web.json_response({"person": self._record(person) if person else None}, headers=self._headers())

    @staticmethod
    def _record(p: dict[str, Any]) -> dict[str, Any]:
        ident = hashlib.sha1(p["email"].encode()).hexdigest()[:24]
        org_id = hashlib.sha1(p["domain"].encode()).hexdigest()[:24]
        return {
            "id": ident,
            "first_name": p["first_name"],
            "last_name": p["last_name"],
            "name": f"{p['first_name']} {p['last_name']}",
            "linkedin_url": f"http://{p['linkedin']}",
            "title": p["title"],
            "headline": f"{p['title']} at {p['company']}",
            "email_status": "verified",
            "email": p["email"],
            "organization_id": org_id,
            "employment_history": [{"current": True, "organization_id": org_id, "organization_name": p["company"],
                                    "title": p["title"], "start_date": "2020-01-01", "end_date": None}],
            "city": p.get("city"),
            "country": p.get("country"),
            "organization": {"id": org_id, "name": p["company"], "primary_domain": p["domain"],
                             "website_url": f"http://www.{p['domain']}"},
        }
