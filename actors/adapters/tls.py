"""The TLS context of every adapter that talks to a server (HTTP, SMTP,
IMAP), from its settings `verify_tls` and `ca_file`: one place, so the
three protocols cannot drift apart.

Verification is on unless a setting turns it off (status and self-checks
flag it). `ca_file` adds a private or test CA: to the system's CAs for the
HTTP APIs ("extra CAs to trust"), in their place for a mail server ("the
CAs to trust", as SMTP and IMAP settings say). TLS 1.2 at least: RFC 8996
retired 1.0 and 1.1, and RFC 8314 asks mail clients for 1.2.
"""

from __future__ import annotations

import ssl
from typing import Any

from actors.errors import TransientError

__all__ = ["client_context", "httpx_verify"]


def client_context(provider: str, *, verify_tls: bool = True, ca_file: str | None = None,
                   with_system_cas: bool = False) -> ssl.SSLContext:
    """A client context. `with_system_cas`: `ca_file` is trusted besides the
    system's CAs, not instead of them. A CA file that cannot be read is a
    TransientError naming the setting (the provider cannot be reached as
    configured), never a crash."""
    try:
        if with_system_cas or not ca_file:
            context = ssl.create_default_context()
            if ca_file:
                context.load_verify_locations(cafile=ca_file)
        else:
            context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TransientError(f"{provider}: cannot load the CA file {ca_file!r} (settings.ca_file): {exc}") from None
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def httpx_verify(settings: Any, provider: str) -> Any:
    """What httpx's `verify=` gets: False (verification off), True (httpx's
    own CA bundle), or a context of the system CAs plus `settings.ca_file`."""
    if not settings.verify_tls:
        return False
    ca_file = getattr(settings, "ca_file", None)
    if not ca_file:
        return True
    return client_context(provider, ca_file=ca_file, with_system_cas=True)
