"""Apollo People Enrichment: `enrich_person` for one person.

    POST {base_url}/api/v1/people/match?email=...&reveal_personal_emails=false&reveal_phone_number=false
    X-Api-Key: <key>   Cache-Control: no-cache
    -> 200 {"person": {...}}   or   200 {"person": null} when nobody matched

Sources: docs.apollo.io/reference/people-enrichment (the current reference
and its Postman collection list every input as a query parameter of the POST;
older examples sent a JSON body, which `params_in: body` still does),
docs.apollo.io/reference/authentication (the X-Api-Key header and GET
/api/v1/auth/health, the probe), docs.apollo.io/reference/rate-limits (fixed
windows per minute, hour and day; the x-*-requests-left headers). A 200 with
`person: null` is an answer, not a failure: `{found: false, person: null}`.

Rate limits. Apollo counts in fixed windows and documents how many requests
are left in each (x-minute-requests-left, x-hourly-requests-left,
x-daily-requests-left; some answers say x-24-hour-requests-left) but not when
a window ends. We assume the windows are aligned to the UTC clock (a minute
window ends at the next whole minute, a day at UTC midnight) and wait for the
longest window that is used up; a Retry-After header, if Apollo sends one,
wins; failing headers, the 429 message ("... times per hour") names the window.

Idempotency: enrichment changes nothing at Apollo, but each match that finds
data spends a credit, so a resend may cost again: not declared deduplicated.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from pydantic import Field, SecretStr

from actors.adapters.http import HttpAdapter, HttpSettings, error_message, json_body, retry_after_s
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
from actors.payloads import EnrichPerson, Payload

__all__ = ["ApolloAdapter", "ApolloSettings", "apollo_error", "apollo_retry_after", "normalise_person"]

MATCH_PATH = "/api/v1/people/match"
HEALTH_PATH = "/api/v1/auth/health"

# (window, seconds, headers saying how many requests are left), longest first.
_WINDOWS = (
    ("day", 86400.0, ("x-daily-requests-left", "x-24-hour-requests-left")),
    ("hour", 3600.0, ("x-hourly-requests-left",)),
    ("minute", 60.0, ("x-minute-requests-left",)),
)
_PER_WINDOW = re.compile(r"per\s+(minute|hour|day)", re.I)


class ApolloSettings(HttpSettings):
    base_url: str = "https://api.apollo.io"
    api_key: SecretStr = Field(description="Apollo API key (a master key is not needed for people/match)")
    params_in: Literal["query", "body"] = Field("query", description="where the match inputs go")
    reveal_personal_emails: bool = Field(False, description="ask for personal emails (may cost credits)")


def _until_boundary(now: float, period_s: float) -> float:
    return period_s - (now % period_s)


def apollo_retry_after(headers: Any, message: str = "", now: float | None = None) -> float | None:
    """Seconds until the used-up window ends (see the module docstring for the assumption)."""
    now = time.time() if now is None else now
    explicit = retry_after_s(headers, now)
    if explicit is not None:
        return explicit
    for _, period_s, names in _WINDOWS:
        for name in names:
            value = headers.get(name)
            try:
                left = float(value) if value is not None else None
            except ValueError:
                left = None
            if left is not None and left <= 0:
                return _until_boundary(now, period_s)
    match = _PER_WINDOW.search(message or "")
    if match:
        period_s = {"minute": 60.0, "hour": 3600.0, "day": 86400.0}[match.group(1).lower()]
        return _until_boundary(now, period_s)
    return None


def apollo_error(response: Any, provider: str, now: float | None = None) -> ProviderError | None:
    """The one place Apollo statuses become our error kinds; None for a 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    detail = error_message(response)
    text = f"{provider}: HTTP {status}" + (f": {detail}" if detail else "")
    if status in (401, 403):
        # 403: the key may not call this endpoint, or the plan lacks access.
        return AuthError(text, status=status)
    if status == 429:
        return RateLimited(text, retry_after_s=apollo_retry_after(response.headers, detail, now), status=status)
    if status >= 500 or status == 408:
        return TransientError(text, retry_after_s=retry_after_s(response.headers), status=status,
                              maybe_delivered=status == 504)
    return ProviderRejected(text, status=status)     # 400, 422 invalid parameters


def _text(record: dict[str, Any], key: str, provider: str) -> str | None:
    value = record.get(key)
    if value is None or isinstance(value, str):
        return value
    raise MalformedResponse(f"{provider}: person.{key} is {type(value).__name__}, expected text")


def normalise_person(person: dict[str, Any], provider: str = "apollo") -> dict[str, Any]:
    """Apollo's person record in the gateway's common shape, the record itself under `raw`."""
    first, last = _text(person, "first_name", provider), _text(person, "last_name", provider)
    name = _text(person, "name", provider) or " ".join(p for p in (first, last) if p) or None
    organization = person.get("organization")
    company = organization.get("name") if isinstance(organization, dict) else None
    if not isinstance(company, str) or not company:
        company = None
        history = person.get("employment_history")
        for job in history if isinstance(history, list) else []:
            if isinstance(job, dict) and job.get("current") and isinstance(job.get("organization_name"), str):
                company = job["organization_name"]
                break
    return {
        "name": name,
        "first_name": first,
        "last_name": last,
        "title": _text(person, "title", provider),
        "company": company,
        "linkedin_url": _text(person, "linkedin_url", provider),
        "email": _text(person, "email", provider),
        "email_status": _text(person, "email_status", provider),
        "raw": person,
    }


class ApolloAdapter(HttpAdapter):
    name = "apollo"
    Settings = ApolloSettings
    capabilities = frozenset({"lead_enrichment"})
    auth_settings = ("api_key",)
    has_probe = True

    settings: ApolloSettings

    def default_headers(self) -> dict[str, str]:
        return {"X-Api-Key": self.settings.api_key.get_secret_value(), "Content-Type": "application/json",
                "Cache-Control": "no-cache", "Accept": "application/json"}

    def inputs(self, payload: EnrichPerson) -> dict[str, Any]:
        out: dict[str, Any] = {k: v for k, v in (("email", payload.email), ("first_name", payload.first_name),
                                                 ("last_name", payload.last_name), ("domain", payload.domain))
                               if v is not None}
        out["reveal_personal_emails"] = self.settings.reveal_personal_emails
        out["reveal_phone_number"] = False       # needs a webhook_url; the answer would come later
        return out

    def _request(self, payload: EnrichPerson) -> dict[str, Any]:
        inputs = self.inputs(payload)
        if self.settings.params_in == "body":
            return {"json": inputs}
        return {"params": {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in inputs.items()}}

    async def enrich_person(self, payload: EnrichPerson, ctx: CallContext) -> dict[str, Any]:
        response = await self._send("POST", MATCH_PATH, **self._request(payload))
        error = apollo_error(response, self.name)
        if error is not None:
            raise error
        body = json_body(response, self.name)
        if not isinstance(body, dict) or "person" not in body:
            raise MalformedResponse(f"{self.name}: the answer has no `person`: {str(body)[:120]!r}")
        person = body["person"]
        if person is None:
            return {"found": False, "person": None}
        if not isinstance(person, dict):
            raise MalformedResponse(f"{self.name}: `person` is {type(person).__name__}, expected an object or null")
        return {"found": True, "person": normalise_person(person, self.name)}

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        if method != "enrich_person":
            return await super().dry_run(method, payload, ctx)
        assert isinstance(payload, EnrichPerson)
        request = self._request(payload)
        return self.would_send(method, preview("POST", self.url(MATCH_PATH), headers=self.default_headers(),
                                         params=request.get("params"), json=request.get("json"),
                                         secret_headers=("X-Api-Key",)))

    async def probe(self) -> None:
        """GET /api/v1/auth/health: free; says whether the key logs in."""
        response = await self._send("GET", HEALTH_PATH)
        error = apollo_error(response, self.name)
        if error is not None:
            raise error
        body = json_body(response, self.name)
        if not isinstance(body, dict) or not isinstance(body.get("is_logged_in"), bool):
            raise MalformedResponse(f"{self.name}: auth/health answered {str(body)[:120]!r}")
        if not body["is_logged_in"]:
            raise AuthError(f"{self.name}: auth/health says the API key does not log in")
        if body.get("healthy") is False:
            raise TransientError(f"{self.name}: auth/health says Apollo is not healthy")
