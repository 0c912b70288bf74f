"""Dropcontact: `enrich_person` (lead_enrichment) and `verify_email`
(email_verification), both through the asynchronous enrich API.

    POST {base_url}/v1/enrich/all      X-Access-Token: <key>
         {"data": [{"email": ..., "first_name": ..., ...}], "siren": false, "language": "en"}
      -> {"request_id": "qzmxkpvlrtdnhwa", "success": true, "error": false, "credits_left": 15277}
    GET  {base_url}/v1/enrich/all/{request_id}
      -> 200 {"success": false, "reason": "Request not ready yet, try again in 30 seconds"}   (keep polling)
      -> 200 {"success": true, "error": false, "data": [{...enriched record...}]}

Sources: developer.dropcontact.com /en/quickstart, /en/errors (a 200 is not
success: read `success`; not ready, an unknown id and a temporary fault all
look alike; most errors say `reason`, 404/422/500 and the credits endpoint
say `detail`; a request the account has too few credits for is refused whole
with 403), /en/credits and /en/reference/get-credits (GET /v1/account/credits,
"this call uses no credit": the probe), /en/reference/enriched-record (only
populated fields come back; `email` is a list of {email, qualification}).

Polling: every `poll_interval_s` (30 s is what Dropcontact asks) until the
attempt's time (`ctx.timeout_s`) is nearly spent; then an AttemptTimeout
whose message names Dropcontact's request_id. A later attempt with the same
idempotency key (and the same person) resumes polling that request instead
of paying for a new one, while this adapter instance lives. The sleep and
the clock are injectable.

The qualification Dropcontact gives an address is `<local part>@<domain>`,
in English or, with `language: fr`, in French. `verify_email` maps it to the
contract's status:

    local part                              status     domain part                  effect
    nominative / nominatif                  valid      pro, perso, school (ecole)   none
    generic / generique                     risky      invalid, invalid domain,     invalid
    catch_all / catch-all                   risky        domaine invalide
    random                                  risky      disposable / jetable         invalid
    non_validated / non_valide              unknown
    invalid / invalide                      invalid
    Do_Not_Contact / Ne_Pas_Contacter       invalid
    anything else                           unknown

Out of credits (403, or 402) is reported as rate_limited for
`no_credits_retry_after_s` (1 h by default): the account cannot serve until
someone tops it up, which is not a fault of the service nor of the key.

Not implemented: webhooks (`custom_callback_url`), `forceResults`, batches of
more than one record, SIREN enrichment beyond passing `siren` through.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr

from actors.adapters.http import HttpAdapter, HttpSettings, json_body, retry_after_s
from actors.adapters.previews import preview
from actors.errors import (
    AttemptTimeout,
    AuthError,
    MalformedResponse,
    ProviderError,
    ProviderRejected,
    RateLimited,
    TransientError,
)
from actors.messages import CallContext
from actors.payloads import EnrichPerson, Payload, VerifyEmail

__all__ = ["DropcontactAdapter", "DropcontactSettings", "dropcontact_error", "qualification_status"]

SUBMIT_PATH = "/v1/enrich/all"
CREDITS_PATH = "/v1/account/credits"
PENDING_LIMIT = 1024

_LOCAL_STATUS = {
    "nominative": "valid", "nominatif": "valid",
    "generic": "risky", "generique": "risky",
    "catch_all": "risky", "catch-all": "risky", "catchall": "risky",
    "random": "risky",
    "non_validated": "unknown", "non_valide": "unknown",
    "invalid": "invalid", "invalide": "invalid",
    "do_not_contact": "invalid", "ne_pas_contacter": "invalid",
}
_BAD_DOMAINS = {"invalid", "invalide", "invalid domain", "invalid_domain", "domaine invalide", "domaine_invalide",
                "disposable", "jetable"}


def _plain(text: str) -> str:
    """Lower case without accents: `non_validé` -> `non_valide`."""
    decomposed = unicodedata.normalize("NFKD", text.strip().lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def qualification_status(qualification: str | None) -> str:
    """Dropcontact's `local@domain` qualification -> valid, invalid, risky or unknown (table above)."""
    if not qualification:
        return "unknown"
    local, _, domain = qualification.rpartition("@") if "@" in qualification else (qualification, "", "")
    if _plain(domain) in _BAD_DOMAINS:
        return "invalid"
    return _LOCAL_STATUS.get(_plain(local), "unknown")


class DropcontactSettings(HttpSettings):
    base_url: str = "https://api.dropcontact.com"
    api_key: SecretStr = Field(description="the X-Access-Token")
    poll_interval_s: float = Field(30.0, gt=0, description="wait between two polls of a pending request")
    language: Literal["en", "fr"] = "en"
    siren: bool = Field(False, description="ask for French company data (SIREN, NAF...)")
    no_credits_retry_after_s: float = Field(3600.0, ge=0, description="how long 'out of credits' throttles")


def _detail(response: Any) -> str:
    """Dropcontact's words: `reason` in most errors, `detail` (text or a list) in the others."""
    try:
        body = response.json()
    except Exception:
        return (response.text or "").strip()[:300]
    if isinstance(body, dict):
        for key in ("reason", "detail", "message"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value[:300]
            if isinstance(value, list) and value:
                parts = [str(v.get("msg") or v.get("message") or v) if isinstance(v, dict) else str(v) for v in value[:3]]
                return "; ".join(parts)[:300]
    return str(body)[:300]


def dropcontact_error(response: Any, provider: str, no_credits_retry_after_s: float = 3600.0) -> ProviderError | None:
    """The one place Dropcontact statuses become our error kinds; None for a 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    detail = _detail(response)
    text = f"{provider}: HTTP {status}" + (f": {detail}" if detail else "")
    if status == 401:
        return AuthError(text, status=status)
    if status in (402, 403):
        return RateLimited(f"{text} (out of credits: top up the account)", retry_after_s=no_credits_retry_after_s,
                           status=status)
    if status == 429:
        return RateLimited(text, retry_after_s=retry_after_s(response.headers), status=status)
    if status >= 500 or status == 408:
        return TransientError(text, retry_after_s=retry_after_s(response.headers), status=status,
                              maybe_delivered=status == 504)
    return ProviderRejected(text, status=status)        # 400 (too many records, missing data), 404, 422


def _text(record: dict[str, Any], key: str, provider: str) -> str | None:
    value = record.get(key)
    if value is None or isinstance(value, str):
        return value or None
    raise MalformedResponse(f"{provider}: record.{key} is {type(value).__name__}, expected text")


def _emails(record: dict[str, Any], provider: str) -> list[dict[str, str | None]]:
    value = record.get("email")
    if value is None:
        return []
    if isinstance(value, str):                     # tolerate a bare address
        return [{"email": value, "qualification": None}]
    if not isinstance(value, list):
        raise MalformedResponse(f"{provider}: record.email is {type(value).__name__}, expected a list")
    out: list[dict[str, str | None]] = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("email"), str):
            raise MalformedResponse(f"{provider}: an email entry is not {{email, qualification}}: {str(item)[:120]!r}")
        qualification = item.get("qualification")
        out.append({"email": item["email"], "qualification": qualification if isinstance(qualification, str) else None})
    return out


def _linkedin_url(value: str | None) -> str | None:
    if not value:
        return None
    return value if value.startswith(("http://", "https://")) else f"https://{value}"


class DropcontactAdapter(HttpAdapter):
    name = "dropcontact"
    Settings = DropcontactSettings
    capabilities = frozenset({"lead_enrichment", "email_verification"})
    auth_settings = ("api_key",)
    has_probe = True          # GET /v1/account/credits is free

    settings: DropcontactSettings

    def __init__(self, settings: DropcontactSettings, *, sleep: Callable[[float], Awaitable[Any]] | None = None,
                 clock: Callable[[], float] | None = None, **kw: Any):
        super().__init__(settings, **kw)
        self._sleep = sleep or asyncio.sleep
        self._clock = clock or time.monotonic
        # (method, idempotency key, record) -> Dropcontact request_id still being polled.
        self._pending: OrderedDict[str, str] = OrderedDict()

    def default_headers(self) -> dict[str, str]:
        return {"X-Access-Token": self.settings.api_key.get_secret_value(), "Content-Type": "application/json"}

    # --- requests --------------------------------------------------------------
    @staticmethod
    def record(method: str, payload: Payload) -> dict[str, Any]:
        if isinstance(payload, VerifyEmail):
            return {"email": payload.email}
        assert isinstance(payload, EnrichPerson)
        out = {"email": payload.email, "first_name": payload.first_name, "last_name": payload.last_name,
               "website": payload.domain}
        return {k: v for k, v in out.items() if v is not None}

    def submit_body(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"data": [record], "siren": self.settings.siren, "language": self.settings.language}

    def _error(self, response: Any) -> ProviderError | None:
        return dropcontact_error(response, self.name, self.settings.no_credits_retry_after_s)

    async def _submit(self, record: dict[str, Any], timeout_s: float) -> str:
        response = await self._send("POST", SUBMIT_PATH, json=self.submit_body(record), timeout=timeout_s)
        error = self._error(response)
        if error is not None:
            raise error
        body = json_body(response, self.name)
        if not isinstance(body, dict):
            raise MalformedResponse(f"{self.name}: expected a JSON object, got {type(body).__name__}")
        if body.get("success") is not True or body.get("error") is True:
            raise ProviderRejected(f"{self.name}: the request was refused: {body.get('reason') or body}")
        request_id = body.get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise MalformedResponse(f"{self.name}: the answer has no request_id: {str(body)[:120]!r}")
        return request_id

    async def _poll(self, request_id: str, timeout_s: float) -> list[Any] | None:
        """The result's records, or None while Dropcontact says it is not ready."""
        response = await self._send("GET", f"{SUBMIT_PATH}/{quote(request_id, safe='')}", timeout=timeout_s)
        error = self._error(response)
        if error is not None:
            raise error
        body = json_body(response, self.name)
        if not isinstance(body, dict) or not isinstance(body.get("success"), bool):
            raise MalformedResponse(f"{self.name}: the result has no `success`: {str(body)[:120]!r}")
        if not body["success"]:
            return None        # not ready yet (or an unknown id, or a passing fault: they look the same)
        data = body.get("data")
        if not isinstance(data, list):
            raise MalformedResponse(f"{self.name}: a finished result has no `data` list: {str(body)[:120]!r}")
        return data

    def _job_key(self, method: str, record: dict[str, Any], ctx: CallContext) -> str | None:
        if not ctx.idempotency_key:
            return None
        text = json.dumps([method, ctx.idempotency_key, record], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    async def _run(self, method: str, record: dict[str, Any], ctx: CallContext) -> tuple[str, dict[str, Any]]:
        """Submit (or resume) and poll until ready within the attempt's time: (request_id, first record)."""
        started = self._clock()
        # Keep a little of the attempt's time so our own timeout, which names
        # the request_id, fires before the provider actor's.
        deadline = started + max(0.0, ctx.timeout_s - min(1.0, 0.1 * ctx.timeout_s))
        key = self._job_key(method, record, ctx)
        request_id = self._pending.get(key) if key else None
        if request_id is None:
            request_id = await self._submit(record, max(0.001, min(self.settings.timeout_s, deadline - started)))
            if key:
                self._pending[key] = request_id
                while len(self._pending) > PENDING_LIMIT:
                    self._pending.popitem(last=False)
        polls = 0

        def timed_out(extra: str = "") -> AttemptTimeout:
            return AttemptTimeout(
                f"{self.name}: request_id {request_id} was not ready after {polls} poll(s) within "
                f"{ctx.timeout_s:g}s{extra}; fetch it later with GET /v1/enrich/all/{request_id}",
                maybe_delivered=True)

        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise timed_out()
            try:
                data = await self._poll(request_id, min(self.settings.timeout_s, remaining))
            except AttemptTimeout as exc:
                raise timed_out(f" (the last poll: {exc.message})") from None
            except ProviderError as exc:
                exc.maybe_delivered = True      # the request was accepted: it is being worked on
                raise
            polls += 1
            if data is not None:
                if key:
                    self._pending.pop(key, None)
                first = data[0] if data else {}
                if not isinstance(first, dict):
                    raise MalformedResponse(f"{self.name}: a record is {type(first).__name__}, expected an object")
                return request_id, first
            remaining = deadline - self._clock()
            if remaining > 0:
                await self._sleep(min(self.settings.poll_interval_s, remaining))

    # --- capability methods ----------------------------------------------------
    async def verify_email(self, payload: VerifyEmail, ctx: CallContext) -> dict[str, Any]:
        request_id, record = await self._run("verify_email", self.record("verify_email", payload), ctx)
        wanted = payload.email.strip().lower()
        entry = next((e for e in _emails(record, self.name) if (e["email"] or "").strip().lower() == wanted), None)
        qualification = entry["qualification"] if entry else None
        return {"email": payload.email, "status": qualification_status(qualification),
                "qualification": qualification, "request_id": request_id}

    async def enrich_person(self, payload: EnrichPerson, ctx: CallContext) -> dict[str, Any]:
        request_id, record = await self._run("enrich_person", self.record("enrich_person", payload), ctx)
        person = self.normalise(record)
        found = bool(person["title"] or person["company"] or person["linkedin_url"]
                     or qualification_status(person["email_status"]) == "valid")
        return {"found": found, "person": person if found else None, "request_id": request_id}

    def normalise(self, record: dict[str, Any]) -> dict[str, Any]:
        emails = _emails(record, self.name)
        best = next((e for e in emails if qualification_status(e["qualification"]) == "valid"),
                    emails[0] if emails else None)
        first, last = _text(record, "first_name", self.name), _text(record, "last_name", self.name)
        return {
            "name": _text(record, "full_name", self.name) or " ".join(p for p in (first, last) if p) or None,
            "first_name": first,
            "last_name": last,
            "title": _text(record, "job", self.name),
            "company": _text(record, "company", self.name),
            "linkedin_url": _linkedin_url(_text(record, "linkedin", self.name)),
            "email": best["email"] if best else None,
            "email_status": best["qualification"] if best else None,
            "company_linkedin": _linkedin_url(_text(record, "company_linkedin", self.name)),
            "website": _text(record, "website", self.name),
            "phone": _text(record, "phone", self.name),
            "raw": record,
        }

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        if method not in ("verify_email", "enrich_person"):
            return await super().dry_run(method, payload, ctx)
        request = preview("POST", self.url(SUBMIT_PATH), headers=self.default_headers(),
                          json=self.submit_body(self.record(method, payload)), secret_headers=("X-Access-Token",))
        request["then"] = (f"GET {self.url(SUBMIT_PATH)}/<request_id> every {self.settings.poll_interval_s:g}s "
                           f"until ready, within the attempt's time")
        return self.would_send(method, request)

    async def probe(self) -> None:
        """GET /v1/account/credits: free; checks the key and that credits are left."""
        response = await self._send("GET", CREDITS_PATH)
        error = self._error(response)
        if error is not None:
            raise error
        body = json_body(response, self.name)
        credits = body.get("credits") if isinstance(body, dict) else None
        if not isinstance(credits, (int, float)) or isinstance(credits, bool):
            raise MalformedResponse(f"{self.name}: the credits answer has no number: {str(body)[:120]!r}")
        if credits <= 0:
            raise RateLimited(f"{self.name}: no credits left: top up the account",
                              retry_after_s=self.settings.no_credits_retry_after_s)
