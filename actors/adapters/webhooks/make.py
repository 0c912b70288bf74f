"""Make (make.com) custom webhooks: `dispatch` runs a scenario once.

Implemented (help.make.com/webhooks, apps.make.com/gateway):
- `POST <hook URL>` with JSON `{"type": event, "timestamp": ISO 8601,
  "id": <idempotency key, else request id>, "data": data}`. The URL
  (`https://hook.<zone>.make.com/<token>`) is the credential: it is a secret
  setting and never appears in errors or dry runs. Webhooks with API-key
  authentication get the key in the `x-make-apikey` header (`api_key`).
- Any 2xx is a success (Make answers 200 `Accepted`; a "Webhook response"
  module in the scenario may answer something else). Value:
  `{delivery_id: the id sent, status_code}`.
- 410 "There is no scenario listening for this webhook.": the scenario is
  off, or Make deactivated the webhook after 120 hours unattached. That is
  permanent until an operator acts, so it is an auth-kind failure whose
  message says what to do. A 404 (no such hook) is treated the same way.
- 429 "Too many requests" (over 300 requests per 10 s): the wait is the
  Retry-After if any, else the documented window, `rate_limit_wait_s` (10).

Not implemented: form or query-string payloads; reading a scenario's
custom "Webhook response" body (only its status is kept).

Idempotency: Make does not deduplicate; the `id` in the body lets the
scenario do it (e.g. a data store lookup). `dispatch` is therefore not in
`resends_deduplicated`.

No probe: every request to a Make webhook runs (or queues) the scenario and
costs credits, and Make offers no call that tests a hook without running it
(the management API needs a different, account-wide token). `has_probe` is
False and `probe()` passes without calling anything; health comes from live
traffic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from pydantic import Field, SecretStr, field_validator

from actors.adapters.http import HttpAdapter, TlsSettings, error_message, raise_for_status, retry_after_s
from actors.adapters.previews import public_headers, shown_url
from actors.adapters.webhooks.timestamps import iso_timestamp
from actors.errors import AuthError, MalformedResponse, RateLimited
from actors.messages import CallContext
from actors.payloads import Dispatch, Payload

__all__ = ["MakeSettings", "MakeWebhookAdapter", "read_hook_reply"]


class MakeSettings(TlsSettings):
    url: SecretStr = Field(description="the webhook URL, https://hook.<zone>.make.com/<token> (a secret)")
    api_key: SecretStr | None = Field(None, description="sent as x-make-apikey when the webhook requires API keys")
    rate_limit_wait_s: float = Field(10.0, ge=0, description="wait after a 429 that names no time")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL (the webhook address Make shows)")
        return value


def read_hook_reply(response: Any, provider: str, delivery_id: str, rate_limit_wait_s: float) -> dict[str, Any]:
    """The one place a Make webhook's reply becomes a value or an error kind."""
    status = response.status_code
    if 200 <= status < 300:
        return {"delivery_id": delivery_id, "status_code": status}
    detail = error_message(response)
    if status in (410, 404):
        raise AuthError(f"{provider}: HTTP {status}: {detail or 'no scenario listening'}: no Make scenario is listening "
                        f"on this webhook; turn the scenario on, or re-attach the webhook to it (Make deactivates a "
                        f"webhook left unattached for 120 hours) and put its address in settings.url", status=status)
    if status in (401, 403):
        raise AuthError(f"{provider}: HTTP {status}: {detail}: the webhook requires an API key; check "
                        f"settings.api_key", status=status)
    if status == 429:
        wait = retry_after_s(response.headers)
        raise RateLimited(f"{provider}: HTTP 429: {detail}", retry_after_s=rate_limit_wait_s if wait is None else wait,
                          status=status)
    raise_for_status(response, provider)
    raise MalformedResponse(f"{provider}: unexpected HTTP {status}", status=status)


class MakeWebhookAdapter(HttpAdapter):
    name = "make"
    Settings = MakeSettings
    capabilities = frozenset({"webhook_dispatch"})
    auth_settings = ("url", "api_key")
    has_probe = False  # see the module docstring: no call tests a hook without running its scenario
    resends_deduplicated = frozenset()

    settings: MakeSettings

    def __init__(self, settings: MakeSettings, *, clock: Callable[[], float] = time.time, **kw: Any):
        super().__init__(settings, **kw)
        self._clock = clock


    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.settings.api_key is not None:
            headers["x-make-apikey"] = self.settings.api_key.get_secret_value()
        return headers

    def _body(self, payload: Dispatch, ctx: CallContext) -> dict[str, Any]:
        return {"type": payload.event, "timestamp": iso_timestamp(self._clock()),
                "id": ctx.idempotency_key or ctx.request_id, "data": payload.data}

    async def dispatch(self, payload: Dispatch, ctx: CallContext) -> dict[str, Any]:
        body = self._body(payload, ctx)
        response = await self._send("POST", self.settings.url.get_secret_value(),
                              headers=self._headers(), json=body)
        return read_hook_reply(response, self.provider, body["id"], self.settings.rate_limit_wait_s)

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        out = await super().dry_run(method, payload, ctx)
        if isinstance(payload, Dispatch):
            out["would_send"] = {"method": "POST", "url": shown_url(self.settings.url.get_secret_value()),
                                 "headers": public_headers(self._headers()), "json": self._body(payload, ctx)}
        return out

    async def probe(self) -> None:
        """Nothing to call: see `has_probe`."""
