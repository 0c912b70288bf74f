"""Standard Webhooks (v1): `dispatch` to any URL, signed so the receiver can trust it.

Implemented (standard-webhooks/standard-webhooks, spec/standard-webhooks.md):
- `POST <url>` with the JSON body `{"type": event, "timestamp": ISO 8601,
  "data": data}` (the spec's recommended payload) and the headers
  `webhook-id`, `webhook-timestamp` (integer Unix seconds) and
  `webhook-signature: v1,<base64 HMAC-SHA256>` over
  `"{webhook-id}.{webhook-timestamp}.{body}"`. The key is the secret
  `whsec_<base64>` with the prefix removed, base64-decoded. The signature is
  computed over the exact bytes sent (the body is serialised once and sent
  as `content=`), since re-serialising JSON would break it.
- `webhook-id` is the request's idempotency key (else its request id): the
  same on every retry, so receivers that drop repeated ids (as the spec
  asks) make a resend harmless, and `dispatch` is in `resends_deduplicated`.
  A key that is not a plain token (spaces, control or non-ASCII characters)
  is hashed into `msg_<sha256 prefix>`, still stable across retries.
- Replies, as the spec's sender rules say: 2xx success; 3xx failure (not
  followed; 301/308 mean the URL moved for good, an operator's change);
  410 Gone means "disable this endpoint": permanent, auth kind, with a
  message saying so; 429, 502 and 504 mean slow down: rate-limited,
  honouring Retry-After (a 504 may have been processed); 401/403 mean the
  receiver refused our signature or credentials.

Not implemented: asymmetric (`v1a`, ed25519 with `whsk_` keys) signatures;
the retry schedule itself (the router and its fallback decide retries).

The URLs are secrets (SecretStr): receivers commonly take their token in the
path (`https://hooks.example.com/T0K3N`), so dry runs, settings and errors
show only the origin, as for Make.

Probe: only with `health_url` (a GET that should answer 2xx). Without it
there is nothing to call: any POST to the endpoint is a delivery.
`probes_with(settings)` says which, for the self-check and the provider actor.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable
from typing import Any

from pydantic import Field, SecretStr, field_validator

from actors.adapters.http import HttpAdapter, TlsSettings, error_message, raise_for_status, retry_after_s
from actors.adapters.previews import shown_url
from actors.adapters.webhooks.timestamps import iso_timestamp
from actors.errors import AuthError, MalformedResponse, ProviderRejected, RateLimited, TransientError
from actors.messages import CallContext
from actors.payloads import Dispatch, Payload

__all__ = ["StandardWebhookAdapter", "StandardWebhookSettings", "decode_secret", "message_id", "read_webhook_reply",
           "sign"]

SECRET_PREFIX = "whsec_"
_TOKEN = re.compile(r"^[A-Za-z0-9_.:~+/=-]{1,200}$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")


def decode_secret(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret.

    The prefix is optional, as in the reference libraries. Padding may be
    left out and the URL-safe alphabet (`-_`) is accepted, since secrets get
    copied through tools that produce either; anything else is refused."""
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    body = encoded.rstrip("=")
    if not body:
        raise ValueError("is empty")
    if not _BASE64.match(encoded) or len(body) % 4 == 1:
        raise ValueError("is not whsec_ followed by base64")
    altchars = b"-_" if ("-" in body or "_" in body) else None
    try:
        return base64.b64decode(body + "=" * (-len(body) % 4), altchars=altchars, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not whsec_ followed by base64") from None


def sign(key: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def message_id(ctx: CallContext) -> str:
    """The webhook-id: stable across retries of the same request."""
    key = ctx.idempotency_key or ctx.request_id
    if _TOKEN.match(key):
        return key
    return "msg_" + hashlib.sha256(key.encode()).hexdigest()[:32]


def read_webhook_reply(response: Any, provider: str, delivery_id: str) -> dict[str, Any]:
    """The one place a receiver's reply becomes a value or an error kind (the spec's sender rules)."""
    status = response.status_code
    if 200 <= status < 300:
        return {"delivery_id": delivery_id, "status_code": status}
    detail = error_message(response)
    if status == 410:
        raise AuthError(f"{provider}: HTTP 410 Gone: the endpoint asked to be disabled (Standard Webhooks); stop "
                        f"sending to it: remove this provider or fix settings.url", status=status)
    if 300 <= status < 400:
        location = response.headers.get("location", "?")
        if status in (301, 308):
            raise AuthError(f"{provider}: HTTP {status}: the endpoint moved permanently to {location}; webhooks do not "
                            f"follow redirects: update settings.url", status=status)
        raise TransientError(f"{provider}: HTTP {status} redirect to {location}; webhooks do not follow redirects",
                             status=status)
    if status in (401, 403):
        raise AuthError(f"{provider}: HTTP {status}: {detail}: the receiver refused the signature or credentials; "
                        f"check that settings.secret is the endpoint's signing secret", status=status)
    if status in (429, 502, 504):
        raise RateLimited(f"{provider}: HTTP {status}: {detail}", retry_after_s=retry_after_s(response.headers),
                          status=status, maybe_delivered=status == 504)
    raise_for_status(response, provider)
    raise MalformedResponse(f"{provider}: unexpected HTTP {status}", status=status)


class StandardWebhookSettings(TlsSettings):
    url: SecretStr = Field(description="the receiving endpoint (a secret: its path often holds a token)")
    secret: SecretStr = Field(description="signing secret, whsec_<base64>")
    health_url: SecretStr | None = Field(None, description="GET this for probe(); without it the probe calls nothing")

    @field_validator("url", "health_url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value

    @field_validator("secret")
    @classmethod
    def _decodable(cls, value: SecretStr) -> SecretStr:
        decode_secret(value.get_secret_value())  # raises ValueError with a message that holds no secret
        return value


class StandardWebhookAdapter(HttpAdapter):
    name = "webhook"
    Settings = StandardWebhookSettings
    capabilities = frozenset({"webhook_dispatch"})
    auth_settings = ("url", "secret")
    has_probe = False  # per instance: True when settings.health_url is set (see the module docstring)
    resends_deduplicated = frozenset({"dispatch"})

    settings: StandardWebhookSettings

    def __init__(self, settings: StandardWebhookSettings, *, clock: Callable[[], float] = time.time, **kw: Any):
        super().__init__(settings, **kw)
        self.has_probe = self.probes_with(settings)  # type: ignore[misc]  # see the module docstring
        self._key = decode_secret(settings.secret.get_secret_value())
        self._clock = clock

    @classmethod
    def probes_with(cls, settings: StandardWebhookSettings) -> bool:
        """Whether an adapter built from these settings really probes."""
        return settings.health_url is not None


    def _request(self, payload: Dispatch, ctx: CallContext) -> tuple[str, dict[str, str], bytes]:
        msg_id = message_id(ctx)
        now = self._clock()
        body = {"type": payload.event, "timestamp": iso_timestamp(now), "data": payload.data}
        try:
            raw = json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        except (TypeError, ValueError) as exc:
            raise ProviderRejected(f"{self.provider}: `data` is not JSON: {exc}") from None
        timestamp = int(now)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(self._key, msg_id, timestamp, raw),
        }
        return msg_id, headers, raw

    async def dispatch(self, payload: Dispatch, ctx: CallContext) -> dict[str, Any]:
        msg_id, headers, raw = self._request(payload, ctx)
        response = await self._send("POST", self.settings.url.get_secret_value(),
                              headers=headers, content=raw)
        return read_webhook_reply(response, self.provider, msg_id)

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        out = await super().dry_run(method, payload, ctx)
        if isinstance(payload, Dispatch):
            _, headers, raw = self._request(payload, ctx)
            out["would_send"] = {"method": "POST", "url": shown_url(self.settings.url.get_secret_value()), "headers": headers,
                                 "body": raw.decode()}
        return out

    async def probe(self) -> None:
        if self.settings.health_url is None:
            return  # nothing to call: see has_probe
        response = await self._send("GET", self.settings.health_url.get_secret_value())
        if response.status_code in (401, 403, 410):
            raise AuthError(f"{self.provider}: HTTP {response.status_code} on settings.health_url: "
                            f"{error_message(response)}", status=response.status_code)
        if response.status_code == 429:
            raise RateLimited(f"{self.provider}: HTTP 429 on settings.health_url",
                              retry_after_s=retry_after_s(response.headers), status=429)
        if 300 <= response.status_code < 400:
            raise TransientError(f"{self.provider}: HTTP {response.status_code} redirect on settings.health_url",
                                 status=response.status_code)
        raise_for_status(response, self.provider)

    def warnings(self) -> list[str]:
        out = super().warnings()
        if not 24 <= len(self._key) <= 64:
            out.append(f"the webhook signing secret is {len(self._key)} bytes; Standard Webhooks asks for 24 to 64 "
                       f"(settings.secret)")
        return out
