"""NeverBounce v4 single check: `verify_email`.

    GET {base_url}/v4/single/check?key=<key>&email=<address>
    -> 200 {"status": "success", "result": "valid", "flags": [...], "suggested_correction": "", "execution_time": 166}
    -> 200 {"status": "auth_failure", "message": "...", "execution_time": 5}   (application errors are HTTP 200)

Sources: developers.neverbounce.com/reference/single-check, /reference/error-handling
(the `status` values below; read `status` before `result`),
/reference/account-info (GET /v4/account/info, free: the probe).

Application errors (HTTP 200, `status` other than success):

    auth_failure        auth          the key is wrong or was reset
    bad_referrer        auth          a key restricted to referrers (the JS widget's) was used from elsewhere
    throttle_triggered  rate_limited  too many requests; NeverBounce names no wait, so none is given
    temp_unavail        transient     an outage on their side; try again shortly
    general_failure     invalid_request  the request was refused; the message says why
                                      (missing parameter, ...)
    anything else       malformed_response

Result mapping (NeverBounce result -> contract status):

    valid       valid
    invalid     invalid
    disposable  invalid   (a throwaway inbox: do not keep it)
    catchall    risky     (the domain accepts everything: cannot tell)
    unknown     unknown
    anything new unknown  (kept in `provider_result`)

NeverBounce echoes the API key in some error messages; it is masked (base.py).
Each check spends a credit: nothing is deduplicated.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

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

__all__ = ["NeverBounceAdapter", "NeverBounceSettings", "neverbounce_error", "RESULT"]

CHECK_PATH = "/v4/single/check"
ACCOUNT_PATH = "/v4/account/info"

RESULT = {"valid": "valid", "invalid": "invalid", "disposable": "invalid", "catchall": "risky", "unknown": "unknown"}

_APP_ERRORS: dict[str, type[ProviderError]] = {
    "auth_failure": AuthError,
    "bad_referrer": AuthError,
    "throttle_triggered": RateLimited,
    "temp_unavail": TransientError,
    "general_failure": ProviderRejected,
}


class NeverBounceSettings(HttpSettings):
    base_url: str = "https://api.neverbounce.com"
    api_key: SecretStr


def neverbounce_error(response: Any, provider: str) -> ProviderError | None:
    """The one place NeverBounce answers become our error kinds, HTTP-200
    application errors included; None when the answer says success."""
    status = response.status_code
    if not 200 <= status < 300:
        detail = error_message(response)
        text = f"{provider}: HTTP {status}" + (f": {detail}" if detail else "")
        if status in (401, 403):
            return AuthError(text, status=status)
        if status == 429:
            return RateLimited(text, retry_after_s=retry_after_s(response.headers), status=status)
        if status >= 500 or status == 408:
            return TransientError(text, retry_after_s=retry_after_s(response.headers), status=status,
                                  maybe_delivered=status == 504)
        return ProviderRejected(text, status=status)
    try:
        body = response.json()
    except Exception:
        return MalformedResponse(f"{provider}: expected JSON, got {(response.text or '')[:120]!r}", status=status)
    if not isinstance(body, dict) or not isinstance(body.get("status"), str):
        return MalformedResponse(f"{provider}: the answer has no `status`: {str(body)[:120]!r}", status=status)
    app_status = body["status"]
    if app_status == "success":
        return None
    message = body.get("message")
    text = f"{provider}: {app_status}" + (f": {message}" if isinstance(message, str) and message else "")
    error = _APP_ERRORS.get(app_status)
    if error is None:
        return MalformedResponse(f"{provider}: unknown status {app_status!r}" + (f": {message}" if message else ""))
    return error(text, status=status)


class NeverBounceAdapter(HttpAdapter):
    name = "neverbounce"
    Settings = NeverBounceSettings
    capabilities = frozenset({"email_verification"})
    auth_settings = ("api_key",)
    has_probe = True

    settings: NeverBounceSettings

    def params(self, payload: VerifyEmail) -> dict[str, str]:
        return {"key": self.settings.api_key.get_secret_value(), "email": payload.email}

    def _error(self, response: Any) -> ProviderError | None:
        return neverbounce_error(response, self.name)

    async def verify_email(self, payload: VerifyEmail, ctx: CallContext) -> dict[str, Any]:
        response = await self._send("GET", CHECK_PATH, params=self.params(payload))
        error = self._error(response)
        if error is not None:
            raise error
        body = json_body(response, self.name)
        result = body.get("result")
        if not isinstance(result, str) or not result:
            raise MalformedResponse(f"{self.name}: a success without a `result`: {self.redactor(str(body)[:120])!r}")
        flags = body.get("flags")
        suggestion = body.get("suggested_correction")
        return {"email": payload.email, "status": RESULT.get(result.lower(), "unknown"), "provider_result": result,
                "flags": [f for f in flags if isinstance(f, str)] if isinstance(flags, list) else [],
                "suggested_correction": suggestion if isinstance(suggestion, str) and suggestion else None}

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        if method != "verify_email":
            return await super().dry_run(method, payload, ctx)
        assert isinstance(payload, VerifyEmail)
        return self.would_send(method, preview("GET", self.url(CHECK_PATH), params=self.params(payload),
                                         secret_params=("key",)))

    async def probe(self) -> None:
        """GET /v4/account/info: free; checks the key (an HTTP-200 auth_failure otherwise)."""
        await self._account()

    async def balance(self) -> float | None:
        """The credits left, paid and free (GET /v4/account/info, free): the
        live balance read by the provider actor (actors/provider/spending.py).
        v4.2 answers `credits_info: {paid_credits_remaining, free_credits_remaining}`,
        v4 `credits` and `free_credits_remaining`."""
        body = await self._account()
        info = body.get("credits_info") if isinstance(body.get("credits_info"), dict) else body
        paid = info.get("paid_credits_remaining", info.get("credits"))
        free = info.get("free_credits_remaining", 0)
        try:
            return float(paid) + float(free or 0)
        except (TypeError, ValueError):
            raise MalformedResponse(f"{self.name}: account info holds no credits: {str(body)[:120]!r}") from None

    async def _account(self) -> dict[str, Any]:
        response = await self._send("GET", ACCOUNT_PATH, params={"key": self.settings.api_key.get_secret_value()})
        error = self._error(response)
        if error is not None:
            raise error
        body = json_body(response, self.name)
        return body if isinstance(body, dict) else {}
