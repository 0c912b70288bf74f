"""A Standard Webhooks receiver: verifies each delivery as the spec tells receivers to.

    POST /webhook   needs `webhook-id`, `webhook-timestamp`, `webhook-signature`
                    (400 without them); a timestamp more than `tolerance_s`
                    (300) from now: 400; no `v1,` signature in the
                    space-separated list matching HMAC-SHA256 over
                    `{id}.{timestamp}.{raw body}` with the secret (`whsec_`
                    prefix removed, base64-decoded), compared in constant
                    time: 401. A verified delivery whose webhook-id was seen
                    before is acknowledged (200) and dropped. `gone = True`
                    answers 410 (the receiver asks the sender to disable it).
    GET /health     200 `{"status": "ok"}` (for the adapter's `health_url`).

This verifier is written from the spec on its own, not from the adapter's
signing code, so a test that passes through it checks the adapter.
`deliveries` keeps each accepted delivery; `duplicates` counts dropped ones.
`secret` may be changed at run time (a rotated or wrong secret).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from actors.sandbox.base import StandIn

__all__ = ["WebhookReceiverStandIn"]


class WebhookReceiverStandIn(StandIn):
    name = "webhook"

    def __init__(self, *, secret: str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", tolerance_s: float = 300.0,
                 clock: Callable[[], float] = time.time, seed: int = 0):
        super().__init__(api_key="", seed=seed)
        self.secret = secret
        self.tolerance_s = tolerance_s
        self.clock = clock
        self.gone = False
        self.deliveries: list[dict[str, Any]] = []
        self.duplicates = 0
        self._seen: set[str] = set()

    @property
    def url(self) -> str:
        return f"{self.base_url}/webhook"

    def adapter_settings(self, **over: Any) -> dict[str, Any]:
        """Settings for the `webhook` adapter that deliver to this receiver."""
        return {"url": self.url, "secret": self.secret, **over}

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/webhook", self._receive), web.get("/health", self._health)]

    def reset(self) -> None:
        self.deliveries.clear()
        self.duplicates = 0
        self._seen.clear()
        self.gone = False

    def authorized(self, request: web.Request) -> bool:
        return True  # the signature, checked with the body in the handler, is the credential

    def error(self, status: int, message: str) -> web.Response:
        return web.json_response({"error": message}, status=status)

    def _key(self) -> bytes:
        secret = self.secret
        return base64.b64decode(secret[len("whsec_"):] if secret.startswith("whsec_") else secret)

    def verify(self, headers: Any, body: bytes) -> tuple[int, str]:
        """(HTTP status, reason): 200 when the delivery is authentic and fresh."""
        msg_id, stamp, signatures = (headers.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
        if not (msg_id and stamp and signatures):
            return 400, "missing required headers"
        try:
            timestamp = int(stamp)
        except ValueError:
            return 400, "invalid timestamp"
        now = self.clock()
        if timestamp < now - self.tolerance_s:
            return 400, "message timestamp too old"
        if timestamp > now + self.tolerance_s:
            return 400, "message timestamp too new"
        signed = msg_id.encode() + b"." + stamp.encode() + b"." + body
        expected = base64.b64encode(hmac.new(self._key(), signed, hashlib.sha256).digest())
        for candidate in signatures.split(" "):
            version, _, value = candidate.partition(",")
            if version == "v1" and hmac.compare_digest(value.encode(), expected):
                return 200, "ok"
        return 401, "no matching signature found"

    async def _receive(self, request: web.Request) -> web.Response:
        if self.gone:
            return self.error(410, "this endpoint is disabled")
        body = await request.read()
        status, reason = self.verify(request.headers, body)
        if status != 200:
            return self.error(status, reason)
        msg_id = request.headers["webhook-id"]
        if msg_id in self._seen:
            self.duplicates += 1
            return web.json_response({"received": True, "duplicate": True})
        self._seen.add(msg_id)
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = body.decode(errors="replace")
        self.deliveries.append({"id": msg_id, "timestamp": int(request.headers["webhook-timestamp"]), "body": payload})
        return web.json_response({"received": True})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})
