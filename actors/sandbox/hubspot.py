"""A local HubSpot CRM v3 contacts API (contacts kept in memory).

    POST /crm/v3/objects/contacts/batch/upsert   upsert by email (`idProperty: email`)
    POST /crm/v3/objects/contacts                create; 409 CONFLICT if the email exists
    GET  /crm/v3/objects/contacts?limit=N        list
    GET  /account-info/v3/details                account details (needs the `oauth` scope)
    POST /oauth/v2/private-apps/get/access-token-info   {"tokenKey"} -> {userId, hubId, appId, scopes}
                                                 (no scope needed: the adapter's probe)

Bearer auth; the token holds `scopes` (by default what a private app made
for this gateway holds: crm.objects.contacts.write and .read), and a call
its scopes do not allow is a 403 MISSING_SCOPES, as at HubSpot; error bodies `{"status": "error", "message", "correlationId",
"category"}`; property values must be strings; at most 100 inputs a batch
(**unconfirmed** at HubSpot); unknown property names are refused when a set
of known properties is given. Rate limits: a rolling 10-second window
(`requests_per_10s`, 100 by default like a free account) and an optional
daily budget; every answer carries X-HubSpot-RateLimit-* headers, and a 429
says which policy was hit in `policyName` (TEN_SECONDLY_ROLLING or DAILY).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import uuid
from typing import Any

from aiohttp import web

from actors.sandbox.base import SlidingWindow, StandIn

__all__ = ["HubSpotStandIn"]

MAX_INPUTS = 100
CATEGORIES = {400: "VALIDATION_ERROR", 401: "INVALID_AUTHENTICATION", 403: "MISSING_SCOPES",
              404: "OBJECT_NOT_FOUND", 409: "CONFLICT", 429: "RATE_LIMITS", 500: "INTERNAL_ERROR",
              502: "BAD_GATEWAY", 503: "SERVICE_UNAVAILABLE"}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class HubSpotStandIn(StandIn):
    name = "hubspot"

    def __init__(self, *, api_key: str = "test-key", seed: int = 0, requests_per_10s: int | None = 100,
                 daily_limit: int | None = None, known_properties: set[str] | None = None,
                 portal_id: int = 123456, clock: Any = time.time,
                 scopes: tuple[str, ...] = ("crm.objects.contacts.write", "crm.objects.contacts.read")):
        super().__init__(api_key=api_key, seed=seed)
        self.scopes = tuple(scopes)
        self.known_properties = known_properties
        self.portal_id = portal_id
        self.clock = clock
        self.daily_limit = daily_limit
        self.throttle_policy = "TEN_SECONDLY_ROLLING"   # what an injected 429 says was hit
        self.contacts: dict[str, dict[str, Any]] = {}
        self._next_id = 101
        self._burst = SlidingWindow(requests_per_10s, 10.0, clock)
        self._daily_used = 0

    # --- the provider's formats ---------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/crm/v3/objects/contacts/batch/upsert", self._upsert),
            web.post("/crm/v3/objects/contacts", self._create),
            web.get("/crm/v3/objects/contacts", self._list),
            web.get("/account-info/v3/details", self._details),
            web.post("/oauth/v2/private-apps/get/access-token-info", self._token_info),
        ]

    # Scopes each route needs (HubSpot's scope reference); the token-info route needs none.
    NEEDS = {("POST", "/crm/v3/objects/contacts/batch/upsert"): "crm.objects.contacts.write",
             ("POST", "/crm/v3/objects/contacts"): "crm.objects.contacts.write",
             ("GET", "/crm/v3/objects/contacts"): "crm.objects.contacts.read",
             ("GET", "/account-info/v3/details"): "oauth"}

    async def _faulted(self, request: web.Request) -> web.StreamResponse | None:
        refused = await super()._faulted(request)
        if refused is not None:
            return refused
        needed = self.NEEDS.get((request.method, request.path))
        if needed is not None and needed not in self.scopes:
            return self.error(403, f"This app hasn't been granted all required scopes to make this call. "
                                   f"Read more about required scopes here: https://developers.hubspot.com/scopes. "
                                   f"requiredGranularScopes: [{needed}]")
        return None

    def error(self, status: int, message: str) -> web.Response:
        return web.json_response({"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
                                  "category": CATEGORIES.get(status, "INTERNAL_ERROR")}, status=status)

    def rate_limited(self, retry_after_s: float | None) -> web.Response:
        return self._limited(self.throttle_policy, retry_after_s)

    def reset(self) -> None:
        self.contacts.clear()
        self._next_id = 101
        self._burst.reset()
        self._daily_used = 0
        self.throttle_policy = "TEN_SECONDLY_ROLLING"

    # --- for tests -----------------------------------------------------------------
    def by_email(self, email: str) -> dict[str, Any] | None:
        email = email.lower()
        return next((c for c in self.contacts.values() if c["properties"].get("email", "").lower() == email), None)

    # --- rate limits ---------------------------------------------------------------
    def _rate_headers(self) -> dict[str, str]:
        headers = {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}
        if self._burst.limit is not None:
            headers["X-HubSpot-RateLimit-Max"] = str(self._burst.limit)
            headers["X-HubSpot-RateLimit-Remaining"] = str(self._burst.remaining())
        if self.daily_limit is not None:
            headers["X-HubSpot-RateLimit-Daily"] = str(self.daily_limit)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(max(0, self.daily_limit - self._daily_used))
        return headers

    def _limited(self, policy: str, retry_after_s: float | None) -> web.Response:
        headers = self._rate_headers()
        if policy == "DAILY":
            message = "You have reached your daily limit."
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = "0"
        else:
            message = f"You have reached your {policy.lower()} limit."
            headers["X-HubSpot-RateLimit-Remaining"] = "0"
        if retry_after_s is not None:
            headers["Retry-After"] = str(int(retry_after_s))
        body = {"status": "error", "message": message, "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()), "policyName": policy}
        return web.json_response(body, status=429, headers=headers)

    def _admit(self) -> web.Response | None:
        if self.daily_limit is not None and self._daily_used >= self.daily_limit:
            return self._limited("DAILY", None)
        if not self._burst.allow():
            return self._limited("TEN_SECONDLY_ROLLING", None)
        self._daily_used += 1
        return None

    def _json(self, body: Any, status: int = 200) -> web.Response:
        return web.json_response(body, status=status, headers=self._rate_headers())

    # --- handlers ------------------------------------------------------------------
    def _now_iso(self) -> str:
        return dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc).isoformat(timespec="milliseconds").replace(
            "+00:00", "Z")

    def _check_properties(self, properties: Any) -> str | None:
        if not isinstance(properties, dict):
            return "`properties` must be an object"
        for name, value in properties.items():
            if self.known_properties is not None and name not in self.known_properties and name != "email":
                return f'Property values were not valid: Property "{name}" does not exist'
            if value is not None and not isinstance(value, str):
                return f'Property values were not valid: "{name}" must be a string'
        return None

    async def _read(self, request: web.Request) -> Any:
        try:
            return json.loads(await request.read() or b"null")
        except ValueError:
            return None

    async def _upsert(self, request: web.Request) -> web.Response:
        limited = self._admit()
        if limited is not None:
            return limited
        body = await self._read(request)
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not isinstance(inputs, list) or not inputs:
            return self.error(400, "Invalid input JSON: `inputs` must be a non-empty list")
        if len(inputs) > MAX_INPUTS:
            return self.error(400, f"Batch size of {len(inputs)} exceeds the limit of {MAX_INPUTS}")
        for item in inputs:
            if not isinstance(item, dict) or item.get("idProperty") != "email":
                return self.error(400, "This stand-in upserts by `idProperty: email` only")
            if not isinstance(item.get("id"), str) or not _EMAIL.match(item["id"]):
                return self.error(400, f"Email address {item.get('id')!r} is invalid")
            problem = self._check_properties(item.get("properties", {}))
            if problem:
                return self.error(400, problem)
        started = self._now_iso()
        results = [self._apply(item["id"], item.get("properties") or {}) for item in inputs]
        return self._json({"status": "COMPLETE", "results": results, "startedAt": started,
                           "completedAt": self._now_iso()})

    def _apply(self, email: str, properties: dict[str, Any]) -> dict[str, Any]:
        now = self._now_iso()
        contact = self.by_email(email)
        new = contact is None
        if contact is None:
            contact_id = str(self._next_id)
            self._next_id += 1
            contact = {"id": contact_id, "properties": {"email": email.lower(), "createdate": now,
                                                        "hs_object_id": contact_id},
                       "createdAt": now, "updatedAt": now, "archived": False}
            self.contacts[contact_id] = contact
        for name, value in properties.items():
            if value is not None:
                contact["properties"][name] = value
        contact["properties"]["lastmodifieddate"] = now
        contact["updatedAt"] = now
        return {**contact, "properties": dict(contact["properties"]), "new": new}

    async def _create(self, request: web.Request) -> web.Response:
        limited = self._admit()
        if limited is not None:
            return limited
        body = await self._read(request)
        properties = body.get("properties") if isinstance(body, dict) else None
        problem = self._check_properties(properties)
        if problem:
            return self.error(400, problem)
        email = properties.get("email")
        if email:
            existing = self.by_email(email)
            if existing is not None:
                return self.error(409, f"Contact already exists. Existing ID: {existing['id']}")
            result = self._apply(email, properties)
        elif properties.get("firstname") or properties.get("lastname"):
            result = self._apply(f"{uuid.uuid4().hex}@no-email.invalid", properties)
            result["properties"].pop("email", None)
        else:
            return self.error(400, "Include at least one of email, firstname or lastname")
        result.pop("new")
        return self._json(result, status=201)

    async def _list(self, request: web.Request) -> web.Response:
        limited = self._admit()
        if limited is not None:
            return limited
        try:
            limit = int(request.query.get("limit", "10"))
        except ValueError:
            return self.error(400, "`limit` must be a number")
        results = list(self.contacts.values())[:max(0, limit)]
        return self._json({"results": results})

    async def _token_info(self, request: web.Request) -> web.Response:
        body = await self._read(request)
        if not isinstance(body, dict) or body.get("tokenKey") != self.api_key:
            return self.error(400, "Token not found")
        return self._json({"userId": 1, "hubId": self.portal_id, "appId": 2, "scopes": list(self.scopes)})

    async def _details(self, request: web.Request) -> web.Response:
        return self._json({"portalId": self.portal_id, "accountType": "STANDARD", "timeZone": "US/Eastern",
                           "companyCurrency": "USD", "additionalCurrencies": [], "utcOffset": "-05:00",
                           "utcOffsetMilliseconds": -18000000, "uiDomain": "app.hubspot.com",
                           "dataHostingLocation": "na1"})
