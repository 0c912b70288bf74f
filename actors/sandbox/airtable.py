"""A local Airtable Web API v0 (records of any base and table, kept in memory).

    POST  /v0/{base}/{table}     create (`records` or a single `fields`)
    PATCH /v0/{base}/{table}     update by id, merging fields; with `performUpsert`, upsert
    PUT   /v0/{base}/{table}     the same, replacing fields
    GET   /v0/meta/whoami        the token's user id and scopes

What it enforces, as Airtable documents: Bearer token; at most 10 records a
request (422 otherwise); upserts merge on 1 to 3 fields, create on no match,
update on one, fail (422) on several; unknown field names (when a schema is
given) and object values without `typecast` are 422; error bodies
`{"error": {"type", "message"}}`; over `requests_per_s` requests to a base in
one second gives a 429 and every request to that base keeps failing with 429
for `penalty_s` (30 s at Airtable), with no rate-limit headers.
"""

from __future__ import annotations

import datetime as dt
import json
import string
import time
from typing import Any

from aiohttp import web

from actors.sandbox.base import SlidingWindow, StandIn

__all__ = ["AirtableStandIn"]

MAX_RECORDS = 10
ERROR_TYPES = {400: "INVALID_REQUEST_UNKNOWN", 401: "AUTHENTICATION_REQUIRED",
               403: "INVALID_PERMISSIONS_OR_MODEL_NOT_FOUND", 404: "NOT_FOUND", 413: "REQUEST_TOO_LARGE",
               422: "INVALID_REQUEST_UNKNOWN", 429: "RATE_LIMIT_REACHED", 500: "SERVER_ERROR", 502: "BAD_GATEWAY",
               503: "SERVICE_UNAVAILABLE"}


class _Refused(Exception):
    def __init__(self, status: int, kind: str, message: str):
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message


class AirtableStandIn(StandIn):
    name = "airtable"

    def __init__(self, *, api_key: str = "test-key", seed: int = 0, requests_per_s: int | None = 5,
                 penalty_s: float = 30.0, known_fields: set[str] | None = None,
                 scopes: tuple[str, ...] = ("data.records:read", "data.records:write", "schema.bases:read"),
                 clock: Any = time.time):
        super().__init__(api_key=api_key, seed=seed)
        self.requests_per_s = requests_per_s
        self.penalty_s = penalty_s
        self.known_fields = known_fields
        self.scopes = scopes
        self.clock = clock
        self.tables: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self._windows: dict[str, SlidingWindow] = {}
        self._penalty_until: dict[str, float] = {}

    # --- the provider's formats ---------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v0/meta/whoami", self._whoami),
            web.post("/v0/{base}/{table}", self._write),
            web.patch("/v0/{base}/{table}", self._write),
            web.put("/v0/{base}/{table}", self._write),
        ]

    def error(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": {"type": ERROR_TYPES.get(status, "SERVER_ERROR"), "message": message}},
                                 status=status)

    def rate_limited(self, retry_after_s: float | None) -> web.Response:
        # Airtable sends no Retry-After: clients must know to wait 30 s.
        return self.error(429, "Rate limit exceeded. Please try again later")

    def reset(self) -> None:
        self.tables.clear()
        self._windows.clear()
        self._penalty_until.clear()

    # --- for tests and the demo ---------------------------------------------------------
    def records(self, base: str, table: str) -> list[dict[str, Any]]:
        return list(self.tables.get((base, table), {}).values())

    def clear_rate_limit(self) -> None:
        self._windows.clear()
        self._penalty_until.clear()

    # --- handlers ------------------------------------------------------------------
    def _admit(self, base: str) -> web.Response | None:
        """Airtable's per-base limit: over the rate, 429 now and for the penalty window."""
        now = self.clock()
        if self._penalty_until.get(base, 0.0) > now:
            return self.rate_limited(None)
        window = self._windows.setdefault(base, SlidingWindow(self.requests_per_s, 1.0, self.clock))
        if not window.allow():
            self._penalty_until[base] = now + self.penalty_s
            return self.rate_limited(None)
        return None

    async def _whoami(self, request: web.Request) -> web.Response:
        return web.json_response({"id": "usrSTANDIN0000001", "scopes": list(self.scopes)})

    def _new_id(self) -> str:
        alphabet = string.ascii_letters + string.digits
        return "rec" + "".join(self.random.choice(alphabet) for _ in range(14))

    def _now_iso(self) -> str:
        return dt.datetime.fromtimestamp(self.clock(), dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def _check_fields(self, fields: Any, typecast: bool) -> dict[str, Any]:
        if not isinstance(fields, dict):
            raise _Refused(422, "INVALID_RECORDS", "Each record needs a `fields` object")
        for name, value in fields.items():
            if self.known_fields is not None and name not in self.known_fields:
                raise _Refused(422, "UNKNOWN_FIELD_NAME", f'Unknown field name: "{name}"')
            if isinstance(value, dict) and not typecast:
                raise _Refused(422, "INVALID_VALUE_FOR_COLUMN",
                               f'Field "{name}" cannot accept the provided value')
        return fields

    async def _write(self, request: web.Request) -> web.Response:
        base, table = request.match_info["base"], request.match_info["table"]
        limited = self._admit(base)
        if limited is not None:
            return limited
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            return self.error(400, "The request body is not valid JSON")
        try:
            return web.json_response(self._apply(request.method, base, table, body))
        except _Refused as refused:
            return web.json_response({"error": {"type": refused.kind, "message": refused.message}},
                                     status=refused.status)

    def _apply(self, method: str, base: str, table: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Refused(422, "INVALID_REQUEST_UNKNOWN", "The request body must be an object")
        typecast = bool(body.get("typecast", False))
        single = method == "POST" and "records" not in body and "fields" in body
        records = [{"fields": body["fields"]}] if single else body.get("records")
        if not isinstance(records, list) or not records:
            raise _Refused(422, "INVALID_REQUEST_MISSING_FIELDS", 'Could not find field "records" in the request body')
        if len(records) > MAX_RECORDS:
            raise _Refused(422, "INVALID_RECORDS",
                           f"You can create, update or upsert at most {MAX_RECORDS} records per request")
        for record in records:
            if not isinstance(record, dict):
                raise _Refused(422, "INVALID_RECORDS", "Each record must be an object")
            self._check_fields(record.get("fields"), typecast)
        store = self.tables.setdefault((base, table), {})
        if method == "POST":
            created = [self._create(store, r["fields"]) for r in records]
            return created[0] if single else {"records": created}
        replace = method == "PUT"
        upsert = body.get("performUpsert")
        if upsert is None:
            for record in records:
                if record.get("id") not in store:
                    raise _Refused(422, "ROW_DOES_NOT_EXIST", f"Record ID {record.get('id')!r} does not exist")
            return {"records": [self._update(store[r["id"]], r["fields"], replace) for r in records]}
        merge_on = upsert.get("fieldsToMergeOn") if isinstance(upsert, dict) else None
        if (not isinstance(merge_on, list) or not 1 <= len(merge_on) <= 3
                or not all(isinstance(f, str) for f in merge_on)):
            raise _Refused(422, "INVALID_REQUEST_UNKNOWN", "performUpsert.fieldsToMergeOn must list 1 to 3 field names")
        # Check every record before changing anything: a refused request changes nothing.
        targets: list[str | None] = []
        for record in records:
            if "id" in record:
                if record["id"] not in store:
                    raise _Refused(422, "ROW_DOES_NOT_EXIST", f"Record ID {record['id']!r} does not exist")
                targets.append(record["id"])
                continue
            fields = record["fields"]
            missing = [f for f in merge_on if fields.get(f) in (None, "")]
            if missing:
                raise _Refused(422, "INVALID_VALUE_FOR_COLUMN",
                               f'Upsert needs a value for the merge field "{missing[0]}" in every record')
            matches = [r for r in store.values() if all(r["fields"].get(f) == fields[f] for f in merge_on)]
            if len(matches) > 1:
                # Airtable documents that several matches fail the request; the type name is ours.
                raise _Refused(422, "INVALID_VALUE_FOR_COLUMN",
                               f"{len(matches)} records match on {', '.join(merge_on)}: upsert needs at most one")
            targets.append(matches[0]["id"] if matches else None)
        out, created_ids, updated_ids = [], [], []
        for record, target in zip(records, targets, strict=True):
            if target is None:
                new = self._create(store, record["fields"])
                created_ids.append(new["id"])
                out.append(new)
            else:
                out.append(self._update(store[target], record["fields"], replace))
                updated_ids.append(target)
        return {"records": out, "createdRecords": created_ids, "updatedRecords": updated_ids}

    def _create(self, store: dict[str, dict[str, Any]], fields: dict[str, Any]) -> dict[str, Any]:
        record = {"id": self._new_id(), "createdTime": self._now_iso(),
                  "fields": {k: v for k, v in fields.items() if v is not None}}
        store[record["id"]] = record
        return dict(record, fields=dict(record["fields"]))

    @staticmethod
    def _update(record: dict[str, Any], fields: dict[str, Any], replace: bool) -> dict[str, Any]:
        merged = {} if replace else dict(record["fields"])
        for key, value in fields.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        record["fields"] = merged
        return dict(record, fields=dict(merged))
