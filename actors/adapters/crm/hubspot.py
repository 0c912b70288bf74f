"""HubSpot CRM v3: `upsert_contact` by email through the batch upsert endpoint.

    POST {base_url}/crm/v3/objects/contacts/batch/upsert
    Authorization: Bearer <private app or OAuth token>   (scope crm.objects.contacts.write)
    {"inputs": [{"idProperty": "email", "id": "ann@example.com",
                 "properties": {"firstname": ..., "lastname": ..., "company": ..., <fields>}}]}
    -> {"status": "COMPLETE", "results": [{"id": "101", "new": true, "properties": {...}, ...}], ...}

Sources: developers.hubspot.com .../crm/objects/contacts (batch upsert; the
`new` flag), the error body `{"status":"error","message","correlationId","category"}`,
the 429 body with `policyName` (DAILY, TEN_SECONDLY_ROLLING, SECONDLY) from
the usage-details doc as quoted on community.hubspot.com, the
X-HubSpot-RateLimit-* headers (changelog 2018-11-06; the burst headers
-Max/-Remaining/-Interval-Milliseconds are **unconfirmed**, read when present).

The probe: `POST /oauth/v2/private-apps/get/access-token-info` with
`{"tokenKey": <token>}` (HubSpot's private apps guide) answers
`{userId, hubId, appId, scopes}` and needs no scope of its own, so a private
app token holding only `crm.objects.contacts.write` (all the upsert needs)
passes it, and the probe checks that scope is among `scopes`. The older
default, `GET /account-info/v3/details`, needs the `oauth` scope, so such a
token failed it and a healthy provider showed an auth problem. OAuth access
tokens are not private app tokens: set `probe_path` to a free GET their
scopes allow (e.g. `/crm/v3/objects/contacts?limit=1` with
`crm.objects.contacts.read`).

Upserting by email lands on the same contact however often it is sent.
`fields` go in as extra contact properties under their HubSpot internal names;
HubSpot property values are strings, so numbers and booleans are sent as text.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator

from actors.adapters.http import HttpAdapter, HttpSettings, json_body, retry_after_s
from actors.adapters.previews import preview
from actors.errors import (
    AuthError,
    MalformedResponse,
    ProviderError,
    ProviderRejected,
    RateLimited,
    TransientError,
)
from actors.messages import CallContext
from actors.payloads import Payload, UpsertContact

__all__ = ["HubSpotAdapter", "HubSpotSettings", "hubspot_error", "hubspot_retry_after"]

UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
TOKEN_INFO_PATH = "/oauth/v2/private-apps/get/access-token-info"
WRITE_SCOPE = "crm.objects.contacts.write"
BURST_WINDOW_S = 10.0         # TEN_SECONDLY_ROLLING, when no interval header says otherwise


class HubSpotSettings(HttpSettings):
    base_url: str = "https://api.hubapi.com"
    token: SecretStr = Field(description="private app or OAuth access token with crm.objects.contacts.write")
    probe_path: str | None = Field(None, description=(
        "a free GET the probe calls instead of asking HubSpot which scopes the private app token holds "
        "(set one for OAuth access tokens)"))
    daily_reset_timezone: str = Field("UTC", description="the account's time zone: the daily limit resets at its midnight")

    @field_validator("daily_reset_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


def _int_header(headers: Any, name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None


def _seconds_to_midnight(now: float, zone: str) -> float:
    tz = ZoneInfo(zone)
    here = dt.datetime.fromtimestamp(now, tz)
    midnight = dt.datetime.combine(here.date() + dt.timedelta(days=1), dt.time(), tz)
    return max(0.0, midnight.timestamp() - now)


def hubspot_retry_after(headers: Any, body: Any, now: float | None = None, zone: str = "UTC") -> float | None:
    """How long a 429 says to wait: Retry-After if sent; else from the policy
    that was hit (body `policyName`) or, failing that, from whichever
    X-HubSpot-RateLimit-*-Remaining header is at zero."""
    now = time.time() if now is None else now
    explicit = retry_after_s(headers, now)
    if explicit is not None:
        return explicit
    interval_ms = _int_header(headers, "x-hubspot-ratelimit-interval-milliseconds")
    burst_s = interval_ms / 1000 if interval_ms and interval_ms > 0 else BURST_WINDOW_S
    policy = str(body.get("policyName") or "").upper() if isinstance(body, dict) else ""
    if policy == "DAILY":
        return _seconds_to_midnight(now, zone)
    if policy == "SECONDLY":
        return 1.0
    if policy:                                  # TEN_SECONDLY_ROLLING and other burst policies
        return burst_s
    if _int_header(headers, "x-hubspot-ratelimit-daily-remaining") == 0:
        return _seconds_to_midnight(now, zone)
    if _int_header(headers, "x-hubspot-ratelimit-remaining") == 0:
        return burst_s
    if _int_header(headers, "x-hubspot-ratelimit-secondly-remaining") == 0:
        return 1.0
    return None


def _message(body: Any, response: Any) -> str:
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("category", "policyName") if body.get(k)]
        message = str(body.get("message") or "")
        return (" ".join(parts) + ": " if parts else "") + message
    return (response.text or "").strip()[:300]


def hubspot_error(response: Any, provider: str, now: float | None = None, zone: str = "UTC") -> ProviderError | None:
    """The one place HubSpot statuses become our error kinds; None for a 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    try:
        body = response.json()
    except Exception:
        body = None
    detail = _message(body, response)
    text = f"{provider}: HTTP {status}" + (f" {detail}" if detail else "")
    if status in (401, 403):
        return AuthError(text, status=status)
    if status == 429:
        return RateLimited(text, retry_after_s=hubspot_retry_after(response.headers, body, now, zone), status=status)
    if status >= 500 or status == 408:
        return TransientError(text, retry_after_s=retry_after_s(response.headers), status=status,
                              maybe_delivered=status == 504)
    return ProviderRejected(text, status=status)    # 400 VALIDATION_ERROR, 404, 409 CONFLICT, ...


def _property_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise ProviderRejected(f"hubspot: field {name!r} must be text, a number or a boolean, got {type(value).__name__}")


class HubSpotAdapter(HttpAdapter):
    name = "hubspot"
    Settings = HubSpotSettings
    capabilities = frozenset({"crm_sync"})
    auth_settings = ("token",)
    has_probe = True
    resends_deduplicated = frozenset({"upsert_contact"})  # upsert by email: the same contact every time

    settings: HubSpotSettings

    def default_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.token.get_secret_value()}",
                "Content-Type": "application/json"}

    def request_body(self, payload: UpsertContact) -> dict[str, Any]:
        properties = {name: _property_value(name, value) for name, value in payload.fields.items() if value is not None}
        for name, value in (("firstname", payload.first_name), ("lastname", payload.last_name),
                            ("company", payload.company)):
            if value is not None:
                properties[name] = value
        return {"inputs": [{"idProperty": "email", "id": payload.email, "properties": properties}]}

    async def upsert_contact(self, payload: UpsertContact, ctx: CallContext) -> dict[str, Any]:
        response = await self._send("POST", UPSERT_PATH, json=self.request_body(payload))
        error = hubspot_error(response, self.name, zone=self.settings.daily_reset_timezone)
        if error is not None:
            raise error
        return self._value(json_body(response, self.name))

    def _value(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise MalformedResponse(f"{self.name}: expected a JSON object, got {type(body).__name__}")
        results = body.get("results")
        errors = body.get("errors")
        if isinstance(results, list) and not results and isinstance(errors, list) and errors:
            # 207 Multi-Status: the input was refused, with the reasons listed.
            reasons = "; ".join(str(e.get("message") if isinstance(e, dict) else e) for e in errors[:3])
            raise ProviderRejected(f"{self.name}: the upsert was refused: {reasons}", status=207)
        if not isinstance(results, list) or not results or not isinstance(results[0], dict):
            raise MalformedResponse(f"{self.name}: the answer has no `results`: {str(body)[:120]!r}")
        first = results[0]
        record_id, new = first.get("id"), first.get("new")
        if not isinstance(record_id, (str, int)) or isinstance(record_id, bool) or record_id == "":
            raise MalformedResponse(f"{self.name}: the result has no id: {str(first)[:120]!r}")
        if not isinstance(new, bool):
            raise MalformedResponse(f"{self.name}: the result's `new` is {type(new).__name__}, expected bool")
        properties = first.get("properties")
        return {"record_id": str(record_id), "created": new, "properties": properties if isinstance(properties, dict) else {}}

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        if method != "upsert_contact":
            return await super().dry_run(method, payload, ctx)
        assert isinstance(payload, UpsertContact)
        return self.would_send(method, preview("POST", self.url(UPSERT_PATH), headers=self.default_headers(),
                                         json=self.request_body(payload), secret_headers=("Authorization",)))

    async def probe(self) -> None:
        """Checks the token and that it may upsert contacts; sends nothing a person sees."""
        if self.settings.probe_path is not None:
            response = await self._send("GET", self.settings.probe_path)
            error = hubspot_error(response, self.name, zone=self.settings.daily_reset_timezone)
            if error is not None:
                raise error
            json_body(response, self.name)
            return
        token = self.settings.token.get_secret_value()
        response = await self._send("POST", TOKEN_INFO_PATH, json={"tokenKey": token})
        error = hubspot_error(response, self.name, zone=self.settings.daily_reset_timezone)
        if isinstance(error, ProviderRejected):
            # HubSpot does not know the token as a private app's: a credentials problem, not a payload.
            raise AuthError(f"{error.message} (not a valid private app token; an OAuth access token needs "
                            "settings.probe_path)", status=error.status)
        if error is not None:
            raise error
        body = json_body(response, self.name)
        scopes = body.get("scopes") if isinstance(body, dict) else None
        if not isinstance(scopes, list):
            raise MalformedResponse(f"{self.name}: the token information has no `scopes` list")
        if WRITE_SCOPE not in scopes:
            raise AuthError(f"{self.name}: the private app token lacks the {WRITE_SCOPE} scope "
                            f"(it has {len(scopes)} other scope(s)); add it to the app", status=response.status_code)
