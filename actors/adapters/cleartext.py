"""Which settings would send credentials, or a secret URL, unencrypted.

An `http://` base URL sends the API key or bearer token in the clear, an
`http://` webhook URL sends its path token, and SMTP with `tls_mode: none`
sends AUTH in the clear. Traffic to a loopback host never leaves the
machine (the local stand-ins, a relay on the same host), so it is not
counted. The adapters report these settings (`Adapter.cleartext_settings`);
`status`, `self-check` and `doctor` warn about them, and SMTP refuses AUTH
over cleartext unless `allow_cleartext_auth: true` says it is meant.
"""

from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, SecretStr

__all__ = ["cleartext_urls", "is_loopback"]


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _plain(value: Any) -> str | None:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    return value if isinstance(value, str) else None


def cleartext_urls(settings: BaseModel) -> list[str]:
    """Names of the settings holding an `http://` URL to a host that is not loopback."""
    out = []
    for name in type(settings).model_fields:
        text = _plain(getattr(settings, name))
        if text is None or not text.lower().startswith("http://"):
            continue
        try:
            host = urlsplit(text).hostname
        except ValueError:
            host = None
        if not is_loopback(host):
            out.append(name)
    return out
