"""Every secret setting of every adapter, set to a canary: a unique value
that must never show up in anything the gateway produces.

`secret_fields()` finds the secret settings from the adapters themselves
(every `SecretStr` field of each registered adapter's Settings), so a new
one is covered or the test says which is missing. `provider_settings()`
gives each adapter working-looking settings aimed at the hostile servers
(hostile.py), with every secret field set to its canary.
"""

from __future__ import annotations

import base64
import hashlib
import typing
from typing import Any

from pydantic import SecretStr

from actors.adapters.registry import BUILTIN, get_adapter_class

# Settings that are not secrets but come from an environment variable whose
# name says secret: masked too (README, "Configuration").
ENV_SECRETS = {("airtable", "base_id"): "AICMO_CANARY_AIRTABLE_BASE_SECRET"}
# Secret settings given through an environment variable (the self-check names it).
FROM_ENV = {("sendgrid", "api_key"): "AICMO_CANARY_SENDGRID_API_KEY", ("imap", "password"): "AICMO_CANARY_IMAP_PASSWORD"}


def _is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in typing.get_args(annotation)


def secret_fields() -> dict[str, list[str]]:
    """adapter name -> its SecretStr settings, for every builtin adapter."""
    out = {}
    for name in BUILTIN:
        fields = [f for f, info in get_adapter_class(name).Settings.model_fields.items() if _is_secret(info.annotation)]
        if fields:
            out[name] = fields
    return out


def canary(adapter: str, field: str, run: str) -> str:
    """Letters and digits only (nothing to escape or quote), long, unique per setting and run."""
    digest = hashlib.sha256(f"{run}/{adapter}/{field}".encode()).hexdigest()[:16]
    return f"cnry{adapter.replace('_', '')}{field.replace('_', '')}{digest}"


def forms(value: str) -> list[str]:
    """The canary and the encodings a careless client or server might show it in."""
    b64 = base64.b64encode(value.encode()).decode().rstrip("=")
    return [value, b64[: len(b64) - 2], base64.urlsafe_b64encode(value.encode()).decode().rstrip("=")[:-2]]


def provider_settings(adapter: str, canaries: dict[str, str], servers: dict[str, Any]) -> dict[str, Any]:
    """Settings for `adapter` against the hostile servers; `canaries` maps
    each secret (or env-secret) field to its value (or `${VAR}`)."""
    http = servers["http"].url
    quick = {"timeout_s": 2}
    c = canaries
    by_adapter: dict[str, Any] = {  # built lazily: only this adapter's fields are given
        "smtp": lambda: {
            "host": "127.0.0.1", "port": servers["smtp"].port, "tls_mode": "none", "username": "bot@example.com",
            "password": c["password"], "oauth_token": c["oauth_token"], "auth_method": "plain",
            "from_addr": "bot@example.com", "timeout_s": 2},
        "gmail": lambda: {
            "host": "127.0.0.1", "port": servers["smtp"].port, "tls_mode": "none", "username": "bot@example.com",
            "password": c["password"], "oauth_token": c["oauth_token"], "auth_method": "xoauth2", "timeout_s": 2},
        "sendgrid": lambda: {"base_url": http, "api_key": c["api_key"], "from_addr": "bot@example.com", **quick},
        "mailgun": lambda: {"base_url": http, "api_key": c["api_key"], "domain": "mg.example.com",
                            "from_addr": "bot@example.com", **quick},
        "linkedin": lambda: {"base_url": http, "access_token": c["access_token"], "author": "urn:li:person:abc", **quick},
        "x": lambda: {"base_url": http, "access_token": c["access_token"], **quick},
        "ayrshare": lambda: {"base_url": http, "api_key": c["api_key"], "profile_key": c["profile_key"],
                             "rate_limit_wait_s": 1, **quick},
        "airtable": lambda: {"base_url": http, "token": c["token"], "base_id": c["base_id"], "table": "Leads",
                             "throttle_s": 1, **quick},
        "hubspot": lambda: {"base_url": http, "token": c["token"], **quick},
        "apollo": lambda: {"base_url": http, "api_key": c["api_key"], **quick},
        "dropcontact": lambda: {"base_url": http, "api_key": c["api_key"], "poll_interval_s": 0.2, **quick},
        "zerobounce": lambda: {"base_url": http, "api_key": c["api_key"], **quick},
        "neverbounce": lambda: {"base_url": http, "api_key": c["api_key"], **quick},
        "imap": lambda: {
            "host": "127.0.0.1", "port": servers["imap"].port, "username": "bot@example.com",
            "password": c["password"], "oauth_token": c["oauth_token"], "ca_file": servers["imap"].ca_file,
            "timeout_s": 2},
        "gmail_api": lambda: {
            "base_url": http, "token_url": f"{http}/token", "access_token": c["access_token"],
            "client_id": "client-id.apps.example.com", "client_secret": c["client_secret"],
            "refresh_token": c["refresh_token"], **quick},
        "make": lambda: {"url": f"{http}/{c['url']}", "api_key": c["api_key"], "rate_limit_wait_s": 1, **quick},
        # Receivers take tokens in the path: the URLs are secret settings, their canary in the path.
        "webhook": lambda: {"url": f"{http}/hooks/{c['url']}", "secret": c["secret"],
                            "health_url": f"{http}/health/{c['health_url']}", **quick},
    }
    return by_adapter[adapter]()


def webhook_secret(value: str) -> str:
    """A Standard Webhooks secret holding the canary: whsec_ + base64 of it."""
    return "whsec_" + base64.b64encode(value.encode()).decode()
