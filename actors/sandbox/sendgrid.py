"""SendGrid v3 stand-in: Mail Send and the key's scopes, as SendGrid answers them.

    POST /v3/mail/send   Bearer key; validates the body like SendGrid (400 with
                         {"errors":[{"message","field","help"}]}); 202, empty
                         body, X-Message-Id
    GET  /v3/scopes      {"scopes": [...]}
    every answer         X-RateLimit-Limit, -Remaining, -Reset (epoch seconds)
    429                  {"errors":[{"field":null,"message":"too many requests"}]}
    401                  "The provided authorization grant is invalid, expired, or revoked"

`sent` holds each accepted request body with its X-Message-Id.
"""

from __future__ import annotations

import math
import re
import secrets
import time
from typing import Any

from aiohttp import web

from actors.sandbox.base import StandIn

__all__ = ["SendGridStandIn"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
# Headers SendGrid refuses in `headers` (they come from the body's own fields).
_RESERVED = {"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type", "content-transfer-encoding",
             "to", "from", "subject", "reply-to", "cc", "bcc"}


class SendGridStandIn(StandIn):
    name = "sendgrid"

    def __init__(self, *, api_key: str = "SG.test-key", seed: int = 0, scopes: list[str] | None = None,
                 rate_limit: int = 600):
        super().__init__(api_key=api_key, seed=seed)
        self.scopes = scopes if scopes is not None else ["mail.send", "user.profile.read"]
        self.rate_limit = rate_limit          # requests per minute, as the X-RateLimit-* headers say
        self.sent: list[dict[str, Any]] = []
        self._window = 0
        self._used = 0

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/v3/mail/send", self._send), web.get("/v3/scopes", self._scopes)]

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
        self.sent.append({"x_message_id": message_id, "body": body})
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
