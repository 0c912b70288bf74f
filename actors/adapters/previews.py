"""What a dry run shows of the request it would have sent: the exact
request, with every credential masked (`***`, as actors/redaction.py masks
them everywhere else)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from actors.redaction import MASK

__all__ = ["MASK", "SECRET_HEADERS", "preview", "public_headers", "shown_url"]

# Request headers that carry credentials (Make's API key, Ayrshare's profile key).
SECRET_HEADERS = frozenset({"authorization", "x-make-apikey", "profile-key"})


def preview(method: str, url: str, *, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
            json: Any = None, secret_headers: tuple[str, ...] = (), secret_params: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a dry run would send: the exact request, secrets masked."""
    hidden_headers = {h.lower() for h in secret_headers}
    out: dict[str, Any] = {
        "method": method,
        "url": url,
        "headers": {k: (MASK if k.lower() in hidden_headers else v) for k, v in (headers or {}).items()},
    }
    if params is not None:
        out["params"] = {k: (MASK if k in secret_params else v) for k, v in params.items()}
    if json is not None:
        out["json"] = json
    return out


def public_headers(headers: dict[str, str]) -> dict[str, str]:
    """Headers with every credential masked, for dry runs."""
    return {k: (MASK if k.lower() in SECRET_HEADERS else v) for k, v in headers.items()}


def shown_url(url: str) -> str:
    """`https://hook.eu1.make.com/***`: webhook URLs carry their token in the
    path (Make, Slack, Zapier, most receivers), so only the origin is shown:
    scheme, host and port, never the userinfo (`https://user:pass@host`)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}/{MASK}"
