"""SendGrid v3 stand-in: Mail Send and the key's scopes, as SendGrid answers them.

    POST /v3/mail/send   Bearer key; validates the body like SendGrid (400 with
                         {"errors":[{"message","field","help"}]}); 202, empty
                         body, X-Message-Id
    GET  /v3/scopes      {"scopes": [...]}
    every answer         X-RateLimit-Limit, -Remaining, -Reset (epoch seconds)
    429                  {"errors":[{"field":null,"message":"too many requests"}]}
    401                  "The provided authorization grant is invalid, expired, or revoked"

`sent` holds each accepted request body with its X-Message-Id, and the
outcome drawn for each recipient (`outcomes`; none without events).

Delivery events (actors/sandbox/delivery_events.py): with `events.url`
set, each accepted message's events are posted there as SendGrid's Event
Webhook posts them, a JSON array signed with ECDSA P-256 over timestamp +
body; `event_public_key` is the key to configure (as SendGrid shows it).
    GET/POST /_sandbox/events   the settings (url, mix, delay_s) and counts
"""

from __future__ import annotations

import base64
import json
import math
import re
import secrets
import time
from typing import Any

from aiohttp import web

from actors.sandbox.base import StandIn
from actors.sandbox.delivery_events import EventPoster, EventsSettings

__all__ = ["SendGridStandIn"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Headers SendGrid refuses in `headers` (they come from the body's own fields).
_RESERVED = {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type", "content-transfer-encoding",
             "to", "from", "subject", "reply-to", "cc", "bcc"}


class SendGridStandIn(StandIn):
    name = "sendgrid"

    def __init__(self, *, api_key: str = "SG.test-key", seed: int = 0, scopes: list[str] | None = None,
                 rate_limit: int = 600, events: EventsSettings | None = None):
        from cryptography.hazmat.primitives.asymmetric import ec

        super().__init__(api_key=api_key, seed=seed)
        self._event_key = ec.generate_private_key(ec.SECP256R1())
        self.events = EventPoster(events or EventsSettings(), self.random)
        self.scopes = scopes if scopes is not None else ["mail.send", "user.profile.read"]
        self.rate_limit = rate_limit          # requests per minute, as the X-RateLimit-* headers say
        self.sent: list[dict[str, Any]] = []
        self._window = 0
        self._used = 0

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v3/mail/send", self._send), web.get("/v3/scopes", self._scopes),
                web.get("/_sandbox/events", self.events.handle), web.post("/_sandbox/events", self.events.handle)]

    @property
    def event_public_key(self) -> str:
        """The Event Webhook's verification key, as SendGrid's settings page shows it."""
        from cryptography.hazmat.primitives import serialization

        der = self._event_key.public_key().public_bytes(serialization.Encoding.DER,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    # --- delivery events ------------------------------------------------------------------
    def _signed(self, events: list[dict[str, Any]]) -> tuple[bytes, dict[str, str]]:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        body = json.dumps(events).encode()
        stamp = str(int(time.time()))
        signature = self._event_key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return body, {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
                      "X-Twilio-Email-Event-Webhook-Timestamp": stamp}

    def _post_events(self, message_id: str, body: dict[str, Any]) -> list[str]:
        """Posts the message's events; the outcome of each recipient."""
        if not self.events.settings.url:
            return []
        args = {k: v for k, v in (body.get("custom_args") or {}).items() if isinstance(v, str)}
        smtp_id = (body.get("headers") or {}).get("Message-ID")
        first, second, outcomes = [], [], []
        recipients = [t["email"] for p in body["personalizations"] for t in p["to"]]
        for n, address in enumerate(recipients):
            def event(kind: str, **extra: Any) -> dict[str, Any]:
                return {"email": address, "timestamp": int(time.time()), "event": kind,
                        "sg_event_id": secrets.token_urlsafe(16), "sg_message_id": f"{message_id}.filter0001.{n}.0",
                        **({"smtp-id": smtp_id} if smtp_id else {}), **args, **extra}
            outcome = self.events.outcome(address)
            outcomes.append(outcome)
            if outcome == "dropped":
                first.append(event("dropped", reason="Account under review"))
                continue
            first.append(event("processed"))
            if outcome == "deferred":
                first.append(event("deferred", response="421 try again later", attempt="1"))
            if outcome == "bounced":
                second.append(event("bounce", type="bounce", status="5.1.1", reason="550 5.1.1 no such user"))
            else:
                second.append(event("delivered", response="250 OK"))
        self.events.post_later([self._signed(batch) for batch in (first, second) if batch])
        return outcomes

    # --- SendGrid's formats --------------------------------------------------------------
    def _limit_headers(self, reset: float | None = None, remaining: int | None = None) -> dict[str, str]:
        now = time.time()
        window = int(now // 60)
        if window != self._window:
            self._window, self._used = window, 0
        self._used += 1
        if remaining is None:
            remaining = max(0, self.rate_limit - self._used)
        return {"X-RateLimit-Limit": str(self.rate_limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Reset": str(int(reset if reset is not None else (window + 1) * 60))}

    def error(self, status: int, message: str, field: str | None = None) -> web.Response:
        if status == 401:
            message = "The provided authorization grant is invalid, expired, or revoked"
        return web.json_response({"errors": [{"message": message, "field": field, "help": None}]},
                                 status=status, headers=self._limit_headers())

    def rate_limited(self, retry_after_s: float | None) -> web.Response:
        until = self.faults.throttle_until
        if retry_after_s is not None:
            until = time.time() + retry_after_s
        return web.json_response({"errors": [{"field": None, "message": "too many requests"}]}, status=429,
                                 headers=self._limit_headers(reset=math.ceil(until), remaining=0))

    def reset(self) -> None:
        self.sent.clear()

    # --- routes -----------------------------------------------------------------------------
    async def _scopes(self, request: web.Request) -> web.Response:
        return web.json_response({"scopes": self.scopes}, headers=self._limit_headers())

    async def _send(self, request: web.Request) -> web.Response:
        if "mail.send" not in self.scopes:
            return self.error(403, "access forbidden")
        try:
            body = await request.json()
        except ValueError:
            return self.error(400, "Bad Request", None)
        problem = self._validate(body)
        if problem is not None:
            field, message = problem
            return self.error(400, message, field)
        message_id = secrets.token_urlsafe(16)[:22]
        self.sent.append({"x_message_id": message_id, "body": body, "outcomes": self._post_events(message_id, body)})
        return web.Response(status=202, headers={"X-Message-Id": message_id, **self._limit_headers()})

    def _validate(self, body: Any) -> tuple[str | None, str] | None:
        if not isinstance(body, dict):
            return None, "Bad Request"
        personalizations = body.get("personalizations")
        if not isinstance(personalizations, list) or not personalizations:
            return "personalizations", ("The personalizations field is required and must have at least one "
                                        "personalization.")
        recipients = 0
        for i, p in enumerate(personalizations):
            to = p.get("to") if isinstance(p, dict) else None
            if not isinstance(to, list) or not to:
                return f"personalizations.{i}.to", ("The to array is required for all personalization objects, "
                                                    "and must have at least one email object with a valid email "
                                                    "address.")
            for j, item in enumerate(to):
                if not isinstance(item, dict) or not _EMAIL.match(str(item.get("email", ""))):
                    return f"personalizations.{i}.to.{j}.email", "Does not contain a valid address."
            recipients += len(to)
        if recipients > 1000:
            return "personalizations", "The total number of recipients must be less than 1000."
        sender = body.get("from")
        if not isinstance(sender, dict) or not _EMAIL.match(str(sender.get("email", ""))):
            return "from.email", ("The from object must be provided for every email send. It is an object that "
                                  "requires the email parameter, but may also contain a name parameter.")
        if not body.get("subject") and not body.get("template_id"):
            return "subject", "The subject is required."
        content = body.get("content")
        if not body.get("template_id"):
            if not isinstance(content, list) or not content or not all(
                    isinstance(c, dict) and c.get("type") and isinstance(c.get("value"), str) and c["value"]
                    for c in content):
                return "content", ("Unless a valid template_id is provided, the content parameter is required. "
                                   "There must be at least one defined content block.")
            types = [c["type"] for c in content]
            if "text/plain" in types and types.index("text/plain") != 0:
                return "content", "If present, text/plain content must be first, followed by text/html."
        headers = body.get("headers") or {}
        if not isinstance(headers, dict) or any(str(k).lower() in _RESERVED for k in headers):
            return "headers", "The headers object contains a reserved header or is not an object of strings."
        custom_args = body.get("custom_args") or {}
        if not isinstance(custom_args, dict) or not all(isinstance(v, str) for v in custom_args.values()):
            return "custom_args", "Invalid type. Expected: string, given: non-string."
        reply_to = body.get("reply_to")
        if reply_to is not None and (not isinstance(reply_to, dict) or not _EMAIL.match(str(reply_to.get("email", "")))):
            return "reply_to.email", "Does not contain a valid address."
        return None
