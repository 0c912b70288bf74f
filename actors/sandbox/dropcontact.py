"""A local Dropcontact enrich API: asynchronous jobs that become ready later.

    POST /v1/enrich/all              X-Access-Token; {"data": [...], "siren": ..., "language": "en"|"fr"}
        -> {"credits_left": N, "request_id": "...", "error": false, "success": true}
    GET  /v1/enrich/all/{request_id}
        -> 200 {"error": false, "reason": "Request not ready yet, try again in 30 seconds", "success": false}
        -> 200 {"data": [...], "error": false, "success": true, "credits_left": N}
    GET  /v1/account/credits         -> {"credits": N}   (free)

A job answers "not ready" to its first `ready_after_polls` polls and until
`ready_after_s` seconds have passed (the clock is injectable); an unknown
request_id answers "not ready", as Dropcontact's does. Each submitted record
costs a credit; a request the credits do not cover is refused whole (403).
Error bodies: `{"error": true, "reason", "success": false}`, and
`{"detail": ...}` for 404, 422 and 500. At most 250 records a request and
15 kB a record (400). Records come back with only the populated fields;
`email` is a list of {email, qualification} where the qualification
(`nominative@pro`, `catch_all@pro`, ...; French labels with `language: fr`)
follows the address rules in contacts.py.
"""

from __future__ import annotations

import json
import string
import time
from typing import Any

from aiohttp import web

from actors.sandbox.base import StandIn
from actors.sandbox.contacts import PEOPLE, classify, find_person, is_free_domain

__all__ = ["DropcontactStandIn", "qualification"]

MAX_RECORDS = 250
MAX_RECORD_BYTES = 15 * 1024
NOT_READY = "Request not ready yet, try again in 30 seconds"

_LOCAL = {"valid": "nominative", "disposable": "nominative", "role": "generic", "catchall": "catch_all",
          "invalid": "invalid", "unknown": "non_validated", "spamtrap": "Do_Not_Contact", "abuse": "Do_Not_Contact",
          "toxic": "Do_Not_Contact", "dnc": "Do_Not_Contact"}
_FRENCH = {"nominative": "nominatif", "generic": "generique", "catch_all": "catch_all", "invalid": "invalide",
           "non_validated": "non_validé", "Do_Not_Contact": "Ne_Pas_Contacter", "pro": "pro", "perso": "perso",
           "disposable": "jetable"}


def qualification(address: str, language: str = "en") -> str:
    """Dropcontact's `local@domain` qualification for an address, by the shared rules."""
    verdict = classify(address)
    local = _LOCAL.get(verdict, "non_validated")
    domain = "disposable" if verdict == "disposable" else ("perso" if is_free_domain(address) else "pro")
    if language == "fr":
        local, domain = _FRENCH.get(local, local), _FRENCH.get(domain, domain)
    return f"{local}@{domain}"


class DropcontactStandIn(StandIn):
    name = "dropcontact"

    def __init__(self, *, api_key: str = "test-key", seed: int = 0, people: list[dict[str, Any]] | None = None,
                 credits: int = 100_000, ready_after_polls: int = 1, ready_after_s: float = 0.0,
                 clock: Any = time.time):
        super().__init__(api_key=api_key, seed=seed)
        self.people = [dict(p) for p in (PEOPLE if people is None else people)]
        self.initial_credits = credits
        self.credits = credits
        self.ready_after_polls = ready_after_polls
        self.ready_after_s = ready_after_s
        self.clock = clock
        self.jobs: dict[str, dict[str, Any]] = {}

    # --- the provider's formats ---------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/enrich/all", self._submit),
            web.get("/v1/enrich/all/{request_id}", self._result),
            web.get("/v1/account/credits", self._credits),
        ]

    def authorized(self, request: web.Request) -> bool:
        return request.headers.get("X-Access-Token") == self.api_key

    def error(self, status: int, message: str) -> web.Response:
        if status in (404, 422, 500):
            return web.json_response({"detail": message}, status=status)
        if status == 401:
            message = "Missing or invalid API key"
        return web.json_response({"error": True, "reason": message, "success": False}, status=status)

    def rate_limited(self, retry_after_s: float | None) -> web.Response:
        headers = {"Retry-After": str(int(retry_after_s))} if retry_after_s is not None else {}
        return web.json_response({"error": True, "reason": "Too Many Requests", "success": False}, status=429,
                                 headers=headers)

    def reset(self) -> None:
        self.jobs.clear()
        self.credits = self.initial_credits

    # --- handlers ------------------------------------------------------------------
    def _new_id(self) -> str:
        return "".join(self.random.choice(string.ascii_lowercase) for _ in range(15))

    async def _submit(self, request: web.Request) -> web.Response:
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            return self.error(422, "Invalid JSON")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list) or not data:
            return self.error(400, "Missing data in JSON")
        if len(data) > MAX_RECORDS:
            return self.error(400, f"Too many records, you can only submit up to {MAX_RECORDS} records")
        for record in data:
            if not isinstance(record, dict):
                return self.error(422, "Each record must be an object")
            if len(json.dumps(record).encode()) > MAX_RECORD_BYTES:
                return self.error(400, "Data size is too big, you can only submit up to 15 kB of data in a single record")
        if self.credits < len(data):
            return web.json_response({"error": True, "reason": "You don't have enough credits for this request",
                                      "success": False}, status=403)
        self.credits -= len(data)
        request_id = self._new_id()
        language = body.get("language") if body.get("language") in ("en", "fr") else "en"
        self.jobs[request_id] = {"records": data, "language": language, "submitted_at": self.clock(), "polls": 0}
        return web.json_response({"credits_left": self.credits, "request_id": request_id, "error": False,
                                  "success": True})

    async def _result(self, request: web.Request) -> web.Response:
        job = self.jobs.get(request.match_info["request_id"])
        if job is None:
            return web.json_response({"error": False, "reason": NOT_READY, "success": False})
        job["polls"] += 1
        if job["polls"] <= self.ready_after_polls or self.clock() - job["submitted_at"] < self.ready_after_s:
            return web.json_response({"error": False, "reason": NOT_READY, "success": False})
        data = [self._enrich(r, job["language"]) for r in job["records"]]
        return web.json_response({"data": data, "error": False, "success": True, "credits_left": self.credits})

    async def _credits(self, request: web.Request) -> web.Response:
        return web.json_response({"credits": self.credits})

    def _enrich(self, record: dict[str, Any], language: str) -> dict[str, Any]:
        email = record.get("email") if isinstance(record.get("email"), str) else None
        website = record.get("website") or record.get("company")
        person = find_person(self.people, email=email) or find_person(
            self.people, first_name=record.get("first_name"), last_name=record.get("last_name"),
            domain=website if isinstance(website, str) else None)
        out: dict[str, Any] = {}
        for key in ("first_name", "last_name", "full_name"):
            if isinstance(record.get(key), str) and record[key]:
                out[key] = record[key].strip().title()
        emails: list[dict[str, str]] = []
        if email:
            emails.append({"email": email, "qualification": qualification(email, language)})
        if person is not None:
            out.update(first_name=person["first_name"], last_name=person["last_name"],
                       full_name=f"{person['first_name']} {person['last_name']}", job=person["title"],
                       company=person["company"], linkedin=person["linkedin"], website=f"www.{person['domain']}",
                       phone=person.get("phone"))
            if not email or email.lower() != person["email"]:
                emails.append({"email": person["email"], "qualification": qualification(person["email"], language)})
        elif isinstance(website, str) and website:
            out["website"] = website
        if emails:
            out["email"] = emails
        return {k: v for k, v in out.items() if v is not None}
