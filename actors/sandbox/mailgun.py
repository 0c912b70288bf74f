"""Mailgun stand-in: the Messages API and domain details, as Mailgun answers them.

    POST /v3/{domain}/messages   HTTP Basic api:<key>; form fields from, to,
                                 subject, text/html, h:*, v:*, o:testmode;
                                 200 {"id": "<…@domain>", "message": "Queued. Thank you."};
                                 400 {"message": "…parameter is missing"};
                                 404 {"message": "Domain not found: …"}
    GET  /v4/domains/{name}      {"domain": {…}, "receiving_dns_records": [], "sending_dns_records": []}
    GET  /v3/domains/{name}      the same: Mailgun still serves it, and its official Python SDK
                                 (`mailgun` on PyPI, `client.domains.get(domain=…)`) asks this path
    401                          "Forbidden" (text/plain), for a bad key
    429                          {"message": "Too many requests"}

A domain sending key (`sending_key`) may only POST messages, as in Mailgun.
`sent` holds each accepted message's form fields (repeated fields as lists).

Delivery events (actors/sandbox/delivery_events.py): with `events.url`
set, each accepted message's events are posted there as Mailgun's webhooks
post them, one per request, signed with HMAC-SHA256 of timestamp + token
under `webhook_signing_key` (the key to configure).
    GET/POST /_sandbox/events   the settings (url, mix, delay_s) and counts
"""

from __future__ import annotations

import base64
import email.parser
import hashlib
import hmac
import json
import secrets
import email.policy
import re
import time
import uuid
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web

from actors.sandbox.base import StandIn
from actors.sandbox.delivery_events import EventPoster, EventsSettings

__all__ = ["MailgunStandIn"]

_ADDRESS = re.compile(r"^(?:[^<>]*<)?[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+>?$")
_MESSAGE_ID = re.compile(r"^<?[^<>@\s]+@[^<>@\s]+>?$")


def _form_fields(content_type: str, body: bytes) -> list[tuple[str, str]]:
    """The request's form fields, from the body the middleware already read."""
    if content_type.startswith("multipart/form-data"):
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        out = []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name and not part.get_filename():
                out.append((str(name), part.get_content()))
        return out
    return parse_qsl(body.decode(errors="replace"), keep_blank_values=True)


class MailgunStandIn(StandIn):
    name = "mailgun"

    def __init__(self, *, api_key: str = "key-test", seed: int = 0, domains: tuple[str, ...] = ("mg.example.com",),
                 sending_key: str | None = None, events: EventsSettings | None = None,
                 webhook_signing_key: str = "mailgun-webhook-signing-key"):
        super().__init__(api_key=api_key, seed=seed)
        self.webhook_signing_key = webhook_signing_key
        self.events = EventPoster(events or EventsSettings(), self.random)
        self.domains = set(domains)
        self.sending_key = sending_key
        self.sent: list[dict[str, Any]] = []

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v3/{domain}/messages", self._send), web.get("/v4/domains/{name}", self._domain),
                web.get("/v3/domains/{name}", self._domain),
                web.get("/_sandbox/events", self.events.handle), web.post("/_sandbox/events", self.events.handle)]

    # --- delivery events ----------------------------------------------------------------
    def _signed(self, data: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        stamp, token = str(int(time.time())), secrets.token_hex(25)
        signature = hmac.new(self.webhook_signing_key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
        return json.dumps({"signature": {"timestamp": stamp, "token": token, "signature": signature},
                           "event-data": data}).encode(), {}

    def _post_events(self, message_id: str, form: dict[str, Any], recipients: list[str]) -> list[str]:
        """Posts the message's events; the outcome of each recipient."""
        if not self.events.settings.url:
            return []
        variables = {k[2:]: v for k, v in form.items() if k.startswith("v:") and isinstance(v, str)}
        posts, outcomes = [], []
        for address in recipients:
            def event(kind: str, **extra: Any) -> tuple[bytes, dict[str, str]]:
                return self._signed({"event": kind, "id": secrets.token_urlsafe(16), "timestamp": time.time(),
                                     "recipient": address, "user-variables": variables,
                                     "message": {"headers": {"message-id": message_id.strip("<>")}}, **extra})
            outcome = self.events.outcome(address)
            outcomes.append(outcome)
            if outcome == "dropped":
                posts.append(event("failed", severity="permanent", reason="espblock",
                                   **{"delivery-status": {"description": "sending paused by the provider"}}))
                continue
            posts.append(event("accepted"))
            if outcome == "deferred":
                posts.append(event("failed", severity="temporary", reason="generic",
                                   **{"delivery-status": {"code": 421, "message": "try again later"}}))
            if outcome == "bounced":
                posts.append(event("failed", severity="permanent", reason="bounce",
                                   **{"delivery-status": {"code": 550, "message": "no such user"}}))
            else:
                posts.append(event("delivered", **{"delivery-status": {"code": 250, "message": "OK"}}))
        self.events.post_later(posts)
        return outcomes

    # --- Mailgun's formats ----------------------------------------------------------
    def _key(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, key = base64.b64decode(header[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return None
        return key if user == "api" else None

    def authorized(self, request: web.Request) -> bool:
        key = self._key(request)
        if key == self.api_key:
            return True
        # Domain sending keys: POST .../messages only.
        return key is not None and key == self.sending_key and request.method == "POST" \
            and request.path.endswith("/messages")

    def error(self, status: int, message: str) -> web.Response:
        if status == 401:
            return web.Response(status=401, text="Forbidden")
        return web.json_response({"message": message}, status=status)

    def rate_limited(self, retry_after_s: float | None) -> web.Response:
        headers = {"Retry-After": str(int(retry_after_s))} if retry_after_s is not None else {}
        return web.json_response({"message": "Too many requests"}, status=429, headers=headers)

    def reset(self) -> None:
        self.sent.clear()

    # --- routes -----------------------------------------------------------------------
    async def _domain(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.domains:
            return self.error(404, "Domain not found")
        return web.json_response({
            "domain": {"name": name, "state": "active", "is_disabled": False, "type": "custom",
                       "created_at": "Mon, 01 Jan 2024 00:00:00 GMT", "id": uuid.uuid5(uuid.NAMESPACE_DNS, name).hex,
                       "require_tls": False, "skip_verification": False, "spam_action": "disabled",
                       "wildcard": False, "web_scheme": "https"},
            "receiving_dns_records": [],
            "sending_dns_records": [],
        })

    async def _send(self, request: web.Request) -> web.Response:
        domain = request.match_info["domain"]
        if domain not in self.domains:
            return self.error(404, f"Domain not found: {domain}")
        fields = _form_fields(request.headers.get("Content-Type", ""), await request.read())
        form: dict[str, Any] = {}
        for key, value in fields:
            if key in form:
                form[key] = [*form[key], value] if isinstance(form[key], list) else [form[key], value]
            else:
                form[key] = value
        for name in ("from", "to", "subject"):
            if not form.get(name):
                return self.error(400, f"{name} parameter is missing")
        if not any(form.get(k) for k in ("text", "html", "amp-html", "template")):
            return self.error(400, "Need at least one of 'text', 'html', 'amp-html' or 'template' parameters specified")
        to = form["to"] if isinstance(form["to"], list) else [form["to"]]
        recipients = [a.strip() for item in to for a in item.split(",") if a.strip()]
        if not _ADDRESS.match(form["from"]):
            return self.error(400, "from parameter is not a valid address. please check documentation")
        if not all(_ADDRESS.match(a) for a in recipients):
            return self.error(400, "to parameter is not a valid address. please check documentation")
        custom_id = form.get("h:Message-Id")
        if custom_id and _MESSAGE_ID.match(custom_id):
            message_id = custom_id if custom_id.startswith("<") else f"<{custom_id}>"
        else:
            message_id = f"<{time.strftime('%Y%m%d%H%M%S', time.gmtime())}.{uuid.uuid4().hex[:16]}@{domain}>"
        self.sent.append({"domain": domain, "id": message_id, "form": form, "recipients": recipients,
                          "outcomes": self._post_events(message_id, form,
                                                        [a.rpartition("<")[2].rstrip(">") for a in recipients])})
        return web.json_response({"id": message_id, "message": "Queued. Thank you."})
