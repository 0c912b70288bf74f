"""What the social-posting and webhook adapters share beyond `http.py`.

- `TlsSettings`: the HTTP settings without a base URL (the webhook adapters
  post to a full URL of their own).
- `client()`: one httpx client per adapter (`http.make_client`).
- `serve_network()`: the network routing rule of `publish_post`.
- `public_headers()`: request headers fit to show in a dry run.
- `shown_url()`: a secret URL fit to show: its origin, the path masked.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from pydantic import Field

from actors.adapters.base import AdapterSettings
from actors.adapters.http import make_client, tls_verify
from actors.errors import NotSupported

__all__ = ["TlsSettings", "client", "iso_timestamp", "public_headers", "serve_network", "shown_url", "tls_verify"]

SECRET_HEADERS = frozenset({"authorization", "x-make-apikey", "profile-key"})


class TlsSettings(AdapterSettings):
    timeout_s: float = Field(default=15.0, gt=0, description="the most one HTTP request may take")
    verify_tls: bool = Field(default=True, description="verify the server's TLS certificate")
    ca_file: str | None = Field(default=None, description="PEM file of extra CAs to trust (private endpoints, tests)")


def client(settings: TlsSettings, transport: Any = None, base_url: str = "", headers: dict[str, str] | None = None):
    return make_client(settings, transport, headers, base_url=base_url)


def serve_network(adapter: str, requested: str | None, served: frozenset[str] | set[str]) -> None:
    """The routing rule of `publish_post`: a payload naming a network this
    provider cannot post to is skipped (NotSupported: the router tries the
    next provider and counts no failure). No network means the provider's own."""
    if requested is not None and requested not in served:
        raise NotSupported(f"{adapter} cannot post to {requested!r} (it serves {', '.join(sorted(served))})")


def public_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers with every credential masked, for dry runs."""
    return {k: ("***" if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


def shown_url(url: str) -> str:
    """`https://hook.eu1.make.com/***`: webhook URLs carry their token in the
    path (Make, Slack, Zapier, most receivers), so only the origin is shown."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/***"


def iso_timestamp(epoch_s: float) -> str:
    """ISO 8601 in UTC with milliseconds, e.g. 2026-01-31T12:00:00.000Z."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
