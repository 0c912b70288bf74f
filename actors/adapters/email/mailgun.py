"""Mailgun Messages API (documentation.mailgun.com/docs/mailgun/api-reference).

    POST {base_url}/v3/{domain}/messages   HTTP Basic api:<key>, form fields
      from, to (repeated), subject, text and/or html,
      h:<Header> custom MIME headers (h:Reply-To, h:Message-Id, h:X-…),
      v:<name> variables (come back in events and webhooks), o:testmode
      200 {"id": "<…@domain>", "message": "Queued. Thank you."}
      400 {"message": …}; 401/403 bad key or no access; 404 domain not found
      (may be temporary: eventually consistent); 429; 5xx retry later
    GET {base_url}/v4/domains/{domain}     the probe (domain details, state)

EU domains set `base_url: https://api.eu.mailgun.net`.

What we relied on: the OpenAPI reference lists `h:X-My-Header` and
`v:my-var` on the send endpoint, and the user manual's "Attaching Metadata"
section documents `v:` (they reach the recipient as an X-Mailgun-Variables
header, so keys should hold nothing private). Mailgun's FAQ and its own
client issues (mailgun/mailgun.js#394) confirm `h:Message-Id` replaces the
generated id when it has the `<unique@domain>` form. Domain details moved to
`/v4/domains/{name}` (the v3 path is the old one; mailgun.js 11 switched).
The 429's headers are undocumented: Retry-After or X-RateLimit-Reset are
read when present. A domain sending key may only POST messages, so the probe
cannot use one: set `probe_domain: false` with such a key.

Idempotency: none documented. The gateway's Message-ID (the same one the
SMTP adapter sets for this request), `v:request_id` and `v:idempotency_key_hash` let a
message be found in Mailgun's events by its request. The variable holds the
key's digest (`key_digest`, the Message-ID's local part), never the key:
Mailgun hands `v:` variables to the recipient in X-Mailgun-Variables.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from pydantic import Field, SecretStr

from actors.adapters.base import AdapterSettings
from actors.adapters.email.email_message import custom_headers, key_digest, make_message_id, sender_of
from actors.adapters.http import HttpAdapter, HttpSettings, json_body, load_httpx, raise_for_status, require
from actors.errors import AuthError, MalformedResponse, ProviderError, TransientError
from actors.messages import CallContext
from actors.payloads import Payload, SendEmail

__all__ = ["MailgunAdapter", "MailgunSettings"]


class MailgunSettings(HttpSettings):
    base_url: str = "https://api.mailgun.net"
    api_key: SecretStr
    domain: str = Field(description="the sending domain, e.g. mg.example.com")
    from_addr: str | None = Field(None, description="sender when the payload gives none")
    test_mode: bool = Field(False, description="o:testmode: Mailgun accepts and drops the message (still billed)")
    probe_domain: bool = Field(True, description="probe with GET /v4/domains/{domain}; false for a domain sending key")


class MailgunAdapter(HttpAdapter):
    name: ClassVar[str] = "mailgun"
    Settings: ClassVar[type[AdapterSettings]] = MailgunSettings
    capabilities: ClassVar[frozenset[str]] = frozenset({"email_sending"})
    auth_settings: ClassVar[tuple[str, ...]] = ("api_key", "domain", "base_url")
    has_probe: ClassVar[bool] = True
    resends_deduplicated: ClassVar[frozenset[str]] = frozenset()  # no idempotency in the Messages API

    settings: MailgunSettings

    def __init__(self, settings: MailgunSettings, **kw: Any):
        super().__init__(settings, **kw)
        self.has_probe = self.probes_with(settings)  # type: ignore[misc]

    @classmethod
    def probes_with(cls, settings: Any) -> bool:
        # A domain sending key can only send: there is nothing free to ask.
        return bool(settings.probe_domain)

    def client_options(self) -> dict[str, Any]:
        return {**super().client_options(), "headers": {"Accept": "application/json"},
                "auth": load_httpx().BasicAuth("api", self.settings.api_key.get_secret_value())}

    @property
    def _send_path(self) -> str:
        return f"/v3/{quote(self.settings.domain, safe='')}/messages"

    # --- the request ------------------------------------------------------------------
    def form(self, payload: SendEmail, ctx: CallContext) -> dict[str, Any]:
        s = self.settings
        sender = sender_of(payload, s.from_addr, self.provider)
        headers, message_id = custom_headers(payload, self.provider)
        form: dict[str, Any] = {"from": sender, "to": list(payload.to), "subject": payload.subject}
        if payload.text is not None:
            form["text"] = payload.text
        if payload.html is not None:
            form["html"] = payload.html
        if payload.reply_to:
            form["h:Reply-To"] = payload.reply_to
        form["h:Message-Id"] = message_id or make_message_id(ctx, sender)
        for name, value in headers.items():
            form[f"h:{name}"] = value
        # Come back in Mailgun's events, so a delivery is matched to its request (actors/events).
        form["v:request_id"] = ctx.request_id
        if ctx.idempotency_key:
            form["v:idempotency_key_hash"] = key_digest(ctx.idempotency_key)
        if s.test_mode:
            form["o:testmode"] = "yes"
        return form

    def _check(self, response: Any) -> None:
        if response.status_code == 404:
            raise TransientError(
                f"{self.provider}: HTTP 404: domain {self.settings.domain!r} not found at {self.settings.base_url} "
                "(EU domains use https://api.eu.mailgun.net; Mailgun says a 404 can also be temporary)",
                status=404)
        raise_for_status(response, self.provider)

    # --- capability methods -------------------------------------------------------------
    async def send_email(self, payload: SendEmail, ctx: CallContext) -> dict[str, Any]:
        form = self.form(payload, ctx)
        response = await self._send("POST", self._send_path, data=form,
                                    timeout=min(self.settings.timeout_s, ctx.timeout_s))
        self._check(response)
        try:
            mailgun_id = require(json_body(response, self.provider), "id", self.provider)
        except ProviderError as exc:
            # A 2xx we cannot read: Mailgun's 200 means queued, but we cannot
            # tell whether Mailgun (or a proxy in between) answered.
            raise MalformedResponse(f"{exc.message} (after HTTP {response.status_code}: "
                                    "the message may have been queued)",
                                    status=response.status_code, maybe_delivered=True) from None
        return {"message_id": mailgun_id, "rfc_message_id": form["h:Message-Id"], "test_mode": self.settings.test_mode}

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        assert isinstance(payload, SendEmail)
        return self.would_send(method, {
            "method": "POST",
            "url": self.settings.base_url.rstrip("/") + self._send_path,
            "auth": "basic api:***",
            "form": self.form(payload, ctx),
        })

    async def probe(self) -> None:
        """GET /v4/domains/{domain}: free, sends nothing; the key works and the domain exists."""
        if not self.settings.probe_domain:
            return
        path = f"/v4/domains/{quote(self.settings.domain, safe='')}"
        response = await self._send("GET", path)
        self._check(response)
        domain = require(json_body(response, self.provider), "domain", self.provider, dict)
        if domain.get("is_disabled") is True or domain.get("state") == "disabled":
            raise AuthError(f"{self.provider}: domain {self.settings.domain!r} is disabled in Mailgun")
