"""ZeroBounce v2 single validation: `verify_email`.

    GET {base_url}/v2/validate?api_key=<key>&email=<address>&ip_address=
    -> 200 {"address", "status", "sub_status", "free_email", "did_you_mean", "domain", "mx_found", ...}
    -> 200 {"error": "Invalid API key or your account ran out of credits"}   (an error inside a 200)

Sources: zerobounce.net/docs/email-validation-api-quickstart (endpoint,
`ip_address` present but may be blank, regional hosts api-us/api-eu: set
`base_url`), /docs/api-dashboard (rate limits: over 80,000 validations in
10 s blocks validate for 1 minute, hence `rate_limit_block_s`; no rate-limit
headers), github zerobounce-python-api-v2 (statuses and sub-statuses). That a
bad key gets HTTP 200 with `{"error": ...}` and getcredits answers
`{"Credits": "-1"}` is from the official clients and third-party notes
(**unconfirmed** in ZeroBounce's own pages): both are handled.

Status mapping (ZeroBounce status -> contract status):

    valid        valid
    invalid      invalid
    catch-all    risky     (the domain accepts everything: cannot tell)
    unknown      unknown
    spamtrap     invalid   (never mail a trap)
    abuse        risky     (exists, but its owner reports mail as spam)
    do_not_mail  invalid   when sub_status is disposable, toxic, global_suppression or possible_trap,
                 risky     otherwise (role_based, mx_forward, role_based_catch_all, ...)
    anything new unknown   (the raw status is kept in `provider_status`)

The value carries `sub_status` and `provider_status` beside `status`.

Probe: GET /v2/getcredits (free). `Credits: -1` is a bad key (auth); 0
credits is reported as rate_limited for `no_credits_retry_after_s` (1 h by
default): no validation can succeed until someone buys credits, and the router
should use the other verifier meanwhile without calling ZeroBounce broken.

Idempotency: every validation spends a credit (except `unknown` results), so
a resend may cost again; nothing is deduplicated.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, SecretStr

from actors.adapters.http import HttpAdapter, HttpSettings, error_message, json_body, retry_after_s
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
from actors.payloads import Payload, VerifyEmail

__all__ = ["ZeroBounceAdapter", "ZeroBounceSettings", "zerobounce_error", "zerobounce_status"]

VALIDATE_PATH = "/v2/validate"
CREDITS_PATH = "/v2/getcredits"

STATUS = {"valid": "valid", "invalid": "invalid", "catch-all": "risky", "unknown": "unknown",
          "spamtrap": "invalid", "abuse": "risky"}
DO_NOT_MAIL_INVALID = frozenset({"disposable", "toxic", "global_suppression", "possible_trap"})


def zerobounce_status(status: str, sub_status: str | None = None) -> str:
    """ZeroBounce's status (and sub_status) -> valid, invalid, risky or unknown (table above)."""
    status = status.strip().lower()
    if status == "do_not_mail":
        return "invalid" if (sub_status or "").strip().lower() in DO_NOT_MAIL_INVALID else "risky"
    return STATUS.get(status, "unknown")


class ZeroBounceSettings(HttpSettings):
    base_url: str = "https://api.zerobounce.net"
    api_key: SecretStr
    ip_address: str = Field("", description="the IP the address signed up from; blank is allowed")
    rate_limit_block_s: float = Field(60.0, ge=0, description="how long a 429 blocks validation (ZeroBounce: 1 min)")
    no_credits_retry_after_s: float = Field(3600.0, ge=0, description="how long 'no credits left' throttles")


def zerobounce_error(response: Any, provider: str, block_s: float = 60.0) -> ProviderError | None:
    """The one place ZeroBounce answers become our error kinds, HTTP 200 `{"error"}` included; None if fine."""
    status = response.status_code
    if 200 <= status < 300:
        try:
            body = response.json()
        except Exception:
            return None                   # json_body reports it
        if isinstance(body, dict) and body.get("error") and "status" not in body:
            # "Invalid API key or your account ran out of credits": the key (or its credits) is the problem.
            return AuthError(f"{provider}: {body['error']}", status=status)
        return None
    detail = error_message(response)
    text = f"{provider}: HTTP {status}" + (f": {detail}" if detail else "")
    if status in (401, 403):              # 403 can also come from ZeroBounce's "API Shield"
        return AuthError(text, status=status)
    if status == 429:
        explicit = retry_after_s(response.headers)
        return RateLimited(text, retry_after_s=block_s if explicit is None else explicit, status=status)
    if status >= 500 or status == 408:    # 500, 520, 524 ...
        return TransientError(text, retry_after_s=retry_after_s(response.headers), status=status,
                              maybe_delivered=status in (504, 524))
    return ProviderRejected(text, status=status)   # 400, 404, 405


class ZeroBounceAdapter(HttpAdapter):
    name = "zerobounce"
    Settings = ZeroBounceSettings
    capabilities = frozenset({"email_verification"})
    auth_settings = ("api_key",)
    has_probe = True

    settings: ZeroBounceSettings

    def params(self, payload: VerifyEmail) -> dict[str, str]:
        return {"api_key": self.settings.api_key.get_secret_value(), "email": payload.email,
                "ip_address": self.settings.ip_address}

    def _error(self, response: Any) -> ProviderError | None:
        return zerobounce_error(response, self.name, self.settings.rate_limit_block_s)

    async def verify_email(self, payload: VerifyEmail, ctx: CallContext) -> dict[str, Any]:
        response = await self._send("GET", VALIDATE_PATH, params=self.params(payload))
        error = self._error(response)
        if error is not None:
            raise error
        body = json_body(response, self.name)
        if not isinstance(body, dict):
            raise MalformedResponse(f"{self.name}: expected a JSON object, got {type(body).__name__}")
        raw_status, sub_status = body.get("status"), body.get("sub_status")
        if not isinstance(raw_status, str) or not raw_status:
            raise MalformedResponse(f"{self.name}: the answer has no `status`: {str(body)[:120]!r}")
        if sub_status is not None and not isinstance(sub_status, str):
            raise MalformedResponse(f"{self.name}: `sub_status` is {type(sub_status).__name__}, expected text")
        return {"email": payload.email, "status": zerobounce_status(raw_status, sub_status),
                "sub_status": sub_status or None, "provider_status": raw_status,
                "did_you_mean": body.get("did_you_mean") or None, "free_email": body.get("free_email")}

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        if method != "verify_email":
            return await super().dry_run(method, payload, ctx)
        assert isinstance(payload, VerifyEmail)
        return self.would_send(method, preview("GET", self.url(VALIDATE_PATH), params=self.params(payload),
                                         secret_params=("api_key",)))

    async def probe(self) -> None:
        """GET /v2/getcredits: free. -1 means a bad key; 0 means no validation can succeed."""
        await self.balance(zero_is_throttle=True)

    async def balance(self, zero_is_throttle: bool = False) -> float | None:
        """The credits left (GET /v2/getcredits, free): the live balance
        read by the provider actor (actors/provider/spending.py)."""
        response = await self._send("GET", CREDITS_PATH, params={"api_key": self.settings.api_key.get_secret_value()})
        error = self._error(response)
        if error is not None:
            raise error
        body = json_body(response, self.name)
        raw = body.get("Credits") if isinstance(body, dict) else None
        try:
            credits = float(raw) if raw is not None and not isinstance(raw, bool) else None
        except (TypeError, ValueError):
            credits = None
        if credits is None:
            raise MalformedResponse(f"{self.name}: getcredits answered {str(body)[:120]!r}")
        if credits < 0:
            raise AuthError(f"{self.name}: getcredits says the API key is not valid (Credits: {raw})")
        if credits == 0 and zero_is_throttle:
            raise RateLimited(f"{self.name}: no credits left: buy credits to validate again",
                              retry_after_s=self.settings.no_credits_retry_after_s)
        return credits
