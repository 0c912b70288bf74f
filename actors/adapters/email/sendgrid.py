"""SendGrid v3 Mail Send (twilio.com/docs/sendgrid/api-reference/mail-send).

    POST {base_url}/v3/mail/send     Authorization: Bearer <key>, JSON body
      202, empty body, X-Message-Id: <id>   queued (not yet delivered)
      400 {"errors":[{"field","message"}]}  the payload; 401 bad key; 403 key
      lacks a permission or the account is blocked; 413 too large; 429 with
      X-RateLimit-Reset (epoch seconds); 5xx server side
    GET {base_url}/v3/scopes         the probe: the key's scopes, which must
      include `mail.send` (twilio.com/docs/sendgrid/api-reference/
      api-key-permissions/retrieve-a-list-of-scopes-for-which-this-user-has-access)

EU regional subusers set `base_url: https://api.eu.sendgrid.com`.

Idempotency: SendGrid documents none. The request carries the gateway's
`Message-ID` header (the same one the SMTP adapter would set for this
request) and `custom_args.idempotency_key`, which SendGrid hands back in
every event webhook, so a delivery can be matched to its request.
A 2xx without `X-Message-Id` is still an acceptance: SendGrid documents 202
as "accepted for delivery", and the id is a convenience for its event
webhooks. It is a delivery whose SendGrid id is unknown (`message_id: None`);
our own `rfc_message_id` still identifies the message.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, SecretStr

from actors.adapters.base import AdapterSettings
from actors.adapters.email.email_message import custom_headers, make_message_id, sender_of
from actors.adapters.http import HttpAdapter, HttpSettings, json_body, raise_for_status, require
from actors.errors import AuthError
from actors.messages import CallContext
from actors.payloads import Payload, SendEmail

__all__ = ["SendGridAdapter", "SendGridSettings"]

SEND_PATH = "/v3/mail/send"
SCOPES_PATH = "/v3/scopes"


class SendGridSettings(HttpSettings):
    base_url: str = "https://api.sendgrid.com"
    api_key: SecretStr
    from_addr: str | None = Field(None, description="sender when the payload gives none (a verified sender)")
    from_name: str | None = None
    sandbox_mode: bool = Field(False, description="SendGrid validates the request and sends nothing")


class SendGridAdapter(HttpAdapter):
    name: ClassVar[str] = "sendgrid"
    Settings: ClassVar[type[AdapterSettings]] = SendGridSettings
    capabilities: ClassVar[frozenset[str]] = frozenset({"email_sending"})
    auth_settings: ClassVar[tuple[str, ...]] = ("api_key",)
    has_probe: ClassVar[bool] = True
    resends_deduplicated: ClassVar[frozenset[str]] = frozenset()  # no idempotency in Mail Send

    settings: SendGridSettings

    def default_headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.settings.api_key.get_secret_value()}",
            "Accept": "application/json",  # SendGrid answers 406 without it
        }

    # --- the request ---------------------------------------------------------------
    def body(self, payload: SendEmail, ctx: CallContext) -> dict[str, Any]:
        s = self.settings
        sender = sender_of(payload, s.from_addr, self.provider)
        headers, message_id = custom_headers(payload, self.provider)
        headers["Message-ID"] = message_id or make_message_id(ctx, sender)
        sender_field: dict[str, str] = {"email": sender}
        if s.from_name and not payload.from_addr:
            sender_field["name"] = s.from_name
        # text/plain must come before text/html in `content`.
        content = [{"type": "text/plain", "value": payload.text}] if payload.text is not None else []
        if payload.html is not None:
            content.append({"type": "text/html", "value": payload.html})
        custom_args = {"request_id": ctx.request_id}  # values must be strings
        if ctx.idempotency_key:
            custom_args["idempotency_key"] = ctx.idempotency_key
        body: dict[str, Any] = {
            # One personalization: every recipient sees the others in To, as over SMTP.
            "personalizations": [{"to": [{"email": address} for address in payload.to]}],
            "from": sender_field,
            "subject": payload.subject,
            "content": content,
            "headers": headers,
            "custom_args": custom_args,
        }
        if payload.reply_to:
            body["reply_to"] = {"email": payload.reply_to}
        if s.sandbox_mode:
            body["mail_settings"] = {"sandbox_mode": {"enable": True}}
        return body

    # --- capability methods -----------------------------------------------------------
    async def send_email(self, payload: SendEmail, ctx: CallContext) -> dict[str, Any]:
        body = self.body(payload, ctx)
        response = await self._send("POST", SEND_PATH, json=body, timeout=min(self.settings.timeout_s, ctx.timeout_s))
        raise_for_status(response, self.provider)
        sendgrid_id = response.headers.get("x-message-id") or None
        return {
            "message_id": sendgrid_id,            # what SendGrid's events and activity search use; None: not given
            "rfc_message_id": body["headers"]["Message-ID"],
            "sandbox": self.settings.sandbox_mode,
        }

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        assert isinstance(payload, SendEmail)
        return self.would_send(method, {
            "method": "POST",
            "url": self.settings.base_url.rstrip("/") + SEND_PATH,
            "headers": {"Authorization": "Bearer ***", "Content-Type": "application/json"},
            "json": self.body(payload, ctx),
        })

    async def probe(self) -> None:
        """GET /v3/scopes: free, sends nothing, and shows the key may send mail."""
        response = await self._send("GET", SCOPES_PATH)
        raise_for_status(response, self.provider)
        scopes = require(json_body(response, self.provider), "scopes", self.provider, list)
        if "mail.send" not in scopes:
            raise AuthError(f"{self.provider}: the API key lacks the mail.send permission "
                            f"(it has {len(scopes)} other scope(s)); give it Mail Send access",
                            status=response.status_code)
