"""Airtable Web API v0: `upsert_contact` into one table, merged on the email field.

    PATCH {base_url}/v0/{base_id}/{table}
    Authorization: Bearer <personal access token>   (scope data.records:write)
    {"performUpsert": {"fieldsToMergeOn": ["Email"]},
     "records": [{"fields": {"Email": ..., "First Name": ..., ...}}], "typecast": false}
    -> {"records": [{"id": "rec...", "createdTime": ..., "fields": {...}}],
        "createdRecords": ["rec..."], "updatedRecords": [...]}

Sources: airtable.com/developers/web/api/update-multiple-records (upserts,
at most 10 records a request, createdRecords/updatedRecords), /errors (the
`{"error": {"type", "message"}}` body; some statuses send `{"error": "NOT_FOUND"}`),
support.airtable.com "managing API call limits" (over 5 req/s per base a
429 comes back and requests fail for 30 seconds: hence `throttle_s`, as
Airtable sends no rate-limit headers), /get-user-id-scopes (GET /v0/meta/whoami,
the probe).

PATCH merges: fields left out of the request keep their values, so a
contact upserted twice with different fields keeps both. The same upsert
sent twice lands on the same record, so `upsert_contact` is safe to resend.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from pydantic import Field, SecretStr

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

__all__ = ["AirtableAdapter", "AirtableSettings", "chunks", "MAX_RECORDS_PER_REQUEST", "airtable_error"]

MAX_RECORDS_PER_REQUEST = 10      # Airtable refuses more records in one create/update/upsert
AIRTABLE_THROTTLE_S = 30.0        # after a 429, "you will need to wait 30 seconds"

T = TypeVar("T")


class AirtableSettings(HttpSettings):
    base_url: str = "https://api.airtable.com"
    token: SecretStr = Field(description="personal access token with data.records:write on the base")
    base_id: str = Field(min_length=1, description="the base, app...")
    table: str = Field(min_length=1, description="table ID (tbl..., recommended) or name")
    email_field: str = "Email"
    first_name_field: str = "First Name"
    last_name_field: str = "Last Name"
    company_field: str = "Company"
    typecast: bool = Field(False, description="let Airtable convert values (e.g. create select options)")
    throttle_s: float = Field(AIRTABLE_THROTTLE_S, ge=0, description="how long a 429 refuses requests")


def chunks(items: Sequence[T], size: int = MAX_RECORDS_PER_REQUEST) -> Iterator[Sequence[T]]:
    """`items` in slices of at most `size`: one Airtable request each."""
    if size < 1:
        raise ValueError("size must be at least 1")
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _error_detail(response: Any) -> tuple[str, str]:
    """(type, message) from any of Airtable's error bodies."""
    try:
        body = response.json()
    except Exception:
        return "", (response.text or "").strip()[:300]
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("type") or ""), str(error.get("message") or "")
    if isinstance(error, str):                       # {"error": "NOT_FOUND"}
        return error, str(body.get("message") or "")
    errors = body.get("errors") if isinstance(body, dict) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        first = errors[0]
        return str(first.get("error") or first.get("type") or ""), str(first.get("message") or "")
    return "", str(body)[:300]


def airtable_error(response: Any, provider: str, throttle_s: float = AIRTABLE_THROTTLE_S) -> ProviderError | None:
    """The one place Airtable statuses become our error kinds; None for a 2xx."""
    status = response.status_code
    if 200 <= status < 300:
        return None
    kind, message = _error_detail(response)
    text = f"{provider}: HTTP {status}" + (f" {kind}" if kind else "") + (f": {message}" if message else "")
    if status in (401, 403):
        return AuthError(text, status=status)
    if status == 404:
        # The base or table does not exist for this token: a configuration
        # problem that fails every request, so it counts like bad credentials.
        return AuthError(text + " (check base_id and table)", status=status)
    if status == 429:
        return RateLimited(text, retry_after_s=throttle_s, status=status)
    if status >= 500 or status == 408:
        return TransientError(text, retry_after_s=retry_after_s(response.headers), status=status,
                              maybe_delivered=status == 504)
    return ProviderRejected(text, status=status)      # 400, 413, 422 and the rest


class AirtableAdapter(HttpAdapter):
    name = "airtable"
    Settings = AirtableSettings
    capabilities = frozenset({"crm_sync"})
    auth_settings = ("token", "base_id", "table")
    has_probe = True
    resends_deduplicated = frozenset({"upsert_contact"})  # an upsert by email lands on the same record

    settings: AirtableSettings

    def default_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.token.get_secret_value()}",
                "Content-Type": "application/json"}

    @property
    def _path(self) -> str:
        s = self.settings
        return f"/v0/{quote(s.base_id, safe='')}/{quote(s.table, safe='')}"

    def fields(self, payload: UpsertContact) -> dict[str, Any]:
        """The record's fields: `payload.fields` by their Airtable names, then the
        named attributes under the configured field names (these win)."""
        s = self.settings
        out: dict[str, Any] = dict(payload.fields)
        for name, value in ((s.email_field, payload.email), (s.first_name_field, payload.first_name),
                            (s.last_name_field, payload.last_name), (s.company_field, payload.company)):
            if value is not None:
                out[name] = value
        return out

    def request_body(self, payloads: Sequence[UpsertContact]) -> dict[str, Any]:
        if not 1 <= len(payloads) <= MAX_RECORDS_PER_REQUEST:
            raise ValueError(f"one Airtable request takes 1 to {MAX_RECORDS_PER_REQUEST} records, got {len(payloads)}")
        return {
            "performUpsert": {"fieldsToMergeOn": [self.settings.email_field]},
            "records": [{"fields": self.fields(p)} for p in payloads],
            "typecast": self.settings.typecast,
        }

    async def upsert_contact(self, payload: UpsertContact, ctx: CallContext) -> dict[str, Any]:
        return (await self._upsert_chunk([payload]))[0]

    async def upsert_many(self, payloads: Sequence[UpsertContact], ctx: CallContext) -> list[dict[str, Any]]:
        """Batch helper (not a capability method): one request per 10 contacts,
        values in the order given. Stops at the first failing request."""
        out: list[dict[str, Any]] = []
        for chunk in chunks(payloads):
            out += await self._upsert_chunk(chunk)
        return out

    async def _upsert_chunk(self, payloads: Sequence[UpsertContact]) -> list[dict[str, Any]]:
        response = await self._send("PATCH", self._path, json=self.request_body(payloads))
        error = airtable_error(response, self.name, self.settings.throttle_s)
        if error is not None:
            raise error
        return self._values(json_body(response, self.name), len(payloads))

    def _values(self, body: Any, expected: int) -> list[dict[str, Any]]:
        if not isinstance(body, dict):
            raise MalformedResponse(f"{self.name}: expected a JSON object, got {type(body).__name__}")
        records = body.get("records")
        if not isinstance(records, list) or len(records) != expected:
            raise MalformedResponse(f"{self.name}: expected `records` with {expected} item(s), got {str(records)[:120]!r}")
        created = body.get("createdRecords")
        updated = body.get("updatedRecords")
        if not isinstance(created, list) or not isinstance(updated, list):
            raise MalformedResponse(f"{self.name}: the answer has no createdRecords/updatedRecords lists "
                                    "(was the request treated as an upsert?)")
        out: list[dict[str, Any]] = []
        for record in records:
            if not isinstance(record, dict) or not isinstance(record.get("id"), str) or not record["id"]:
                raise MalformedResponse(f"{self.name}: a record has no id: {str(record)[:120]!r}")
            fields = record.get("fields")
            out.append({"record_id": record["id"], "created": record["id"] in created,
                        "fields": fields if isinstance(fields, dict) else {}})
        return out

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        if method != "upsert_contact":
            return await super().dry_run(method, payload, ctx)
        assert isinstance(payload, UpsertContact)
        return self.would_send(method, preview("PATCH", self.url(self._path), headers=self.default_headers(),
                                         json=self.request_body([payload]), secret_headers=("Authorization",)))

    async def probe(self) -> None:
        """GET /v0/meta/whoami: free, checks the token and, where the answer
        lists scopes, that it may write records."""
        response = await self._send("GET", "/v0/meta/whoami")
        error = airtable_error(response, self.name, self.settings.throttle_s)
        if error is not None:
            raise error
        body = json_body(response, self.name)
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise MalformedResponse(f"{self.name}: whoami answered without a user id: {str(body)[:120]!r}")
        scopes = body.get("scopes")
        if isinstance(scopes, list) and "data.records:write" not in scopes:
            raise AuthError(f"{self.name}: the token lacks the data.records:write scope (it has {', '.join(map(str, scopes))})")
