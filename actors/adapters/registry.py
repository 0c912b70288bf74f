"""Adapter names to classes.

Builtins are listed here by module path and imported only when a config uses
them, so a provider actor loads only its own client library. Third parties
register more under the `aicmo_gateway.adapters` entry-point group:

    [project.entry-points."aicmo_gateway.adapters"]
    my_crm = "my_package.adapters:MyCrmAdapter"
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points

from actors.adapters.base import Adapter
from actors.errors import UnknownAdapter

ENTRY_POINT_GROUP = "aicmo_gateway.adapters"

BUILTIN: dict[str, str] = {
    "noop": "actors.adapters.noop:NoopAdapter",
    "simulated": "actors.adapters.simulated:SimulatedAdapter",
    "outbox": "actors.adapters.outbox:OutboxAdapter",
    # email_sending
    "smtp": "actors.adapters.email.smtp:SmtpAdapter",
    "gmail": "actors.adapters.email.smtp:GmailSmtpAdapter",
    "sendgrid": "actors.adapters.email.sendgrid:SendGridAdapter",
    "mailgun": "actors.adapters.email.mailgun:MailgunAdapter",
    # social_posting
    "linkedin": "actors.adapters.social.linkedin:LinkedInAdapter",
    "x": "actors.adapters.social.x:XAdapter",
    "ayrshare": "actors.adapters.social.ayrshare:AyrshareAdapter",
    # crm_sync
    "airtable": "actors.adapters.crm.airtable:AirtableAdapter",
    "hubspot": "actors.adapters.crm.hubspot:HubSpotAdapter",
    # lead_enrichment
    "apollo": "actors.adapters.enrichment.apollo:ApolloAdapter",
    "dropcontact": "actors.adapters.enrichment.dropcontact:DropcontactAdapter",
    # email_verification
    "zerobounce": "actors.adapters.verification.zerobounce:ZeroBounceAdapter",
    "neverbounce": "actors.adapters.verification.neverbounce:NeverBounceAdapter",
    # reply_fetching
    "imap": "actors.adapters.replies.imap:ImapAdapter",
    "gmail_api": "actors.adapters.replies.gmail_api:GmailApiAdapter",
    # webhook_dispatch
    "make": "actors.adapters.webhooks.make:MakeWebhookAdapter",
    "webhook": "actors.adapters.webhooks.webhook:StandardWebhookAdapter",
}


def _import(target: str) -> type[Adapter]:
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise TypeError(f"{target} is not an Adapter subclass")
    return cls


@lru_cache(maxsize=1)
def _entry_point_targets() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> list[str]:
    return sorted(set(BUILTIN) | set(_entry_point_targets()))


def get_adapter_class(name: str) -> type[Adapter]:
    target = BUILTIN.get(name) or _entry_point_targets().get(name)
    if target is None:
        raise UnknownAdapter(f"unknown adapter {name!r}; known: {', '.join(available())}")
    return _import(target)
