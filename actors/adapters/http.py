"""Shared plumbing for the HTTP adapters: one client per adapter, and the
translation of httpx exceptions and HTTP statuses into our error kinds.

Each adapter still decides what a provider's body means (Dropcontact and
NeverBounce report errors inside HTTP 200s); this module handles what every
HTTP API has in common. The transport is injectable: pass
`httpx.MockTransport(handler)` in unit tests.
"""

from __future__ import annotations

import email.utils
import sys
import time
from typing import Any

from pydantic import Field

from actors.adapters.base import AdapterSettings
from actors.errors import (
    AttemptTimeout,
    AuthError,
    MalformedResponse,
    ProviderError,
    ProviderRejected,
    RateLimited,
    TransientError,
)


class HttpSettings(AdapterSettings):
    base_url: str
    timeout_s: float = Field(default=15.0, gt=0, description="the most one HTTP request may take")
    verify_tls: bool = Field(default=True, description="verify the server's TLS certificate")
    ca_file: str | None = Field(default=None, description="PEM file of extra CAs to trust (private endpoints, tests)")


def tls_verify(settings: Any) -> Any:
    """What httpx's `verify=` gets: off, the system CAs, or the system CAs
    plus `settings.ca_file` (so a private or test CA is trusted without
    turning verification off)."""
    if not settings.verify_tls:
        return False
    ca_file = getattr(settings, "ca_file", None)
    if not ca_file:
        return True
    import ssl

    try:
        context = ssl.create_default_context()
        context.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise TransientError(f"cannot load the CA file {ca_file!r} (settings.ca_file): {exc}") from None
    return context


def load_httpx() -> Any:
    """httpx, imported lazily: only HTTP provider actors pay for it.

    httpx's `__init__` imports its command-line client, and with it click, rich
    and pygments when they are installed (rich is, for our own CLI): about half
    of httpx's import time, paid in a provider actor's first request, for a CLI
    no actor runs (encode/httpx#3547). A None in sys.modules makes that import
    fail, and httpx falls back to a stub `httpx.main`."""
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[assignment]
    import httpx

    return httpx


def make_client(settings: Any, transport: Any = None, headers: dict[str, str] | None = None,
                base_url: str | None = None):
    """One client per adapter. Redirects are not followed: a provider that
    moved answers 3xx, which is an error to report, not a hop to take."""
    return load_httpx().AsyncClient(
        base_url=settings.base_url if base_url is None else base_url,
        timeout=settings.timeout_s,
        verify=tls_verify(settings),
        transport=transport,
        headers=headers or {},
        follow_redirects=False,
    )


class LazyClient:
    """An adapter's one client: made on first use (so httpx is imported only
    by the provider actors that talk HTTP), reused, closed with the adapter."""

    def __init__(self, make: Any):
        self._make = make
        self._client: Any = None

    def get(self) -> Any:
        if self._client is None:
            self._client = self._make()
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def retry_after_s(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait, from Retry-After (seconds or HTTP date) or a reset header (epoch seconds)."""
    now = time.time() if now is None else now
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        if value.isdigit():
            return float(value)
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
        except (TypeError, ValueError):
            pass
    for name in ("x-ratelimit-reset", "x-rate-limit-reset"):
        value = headers.get(name)
        if value:
            try:
                reset = float(value)
            except ValueError:
                continue
            # Some APIs send seconds-until-reset, others an epoch time.
            return max(0.0, reset - now) if reset > 1e9 else reset
    return None


def error_message(response: Any, limit: int = 300) -> str:
    """The provider's own words about an error, from the usual JSON shapes or the text."""
    try:
        body = response.json()
    except Exception:
        text = (response.text or "").strip()
        return text[:limit] or response.reason_phrase or ""
    parts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in ("message", "detail", "title", "reason", "error"):
                value = node.get(key)
                if isinstance(value, str):
                    parts.append(value)
                elif isinstance(value, (dict, list)):
                    walk(value)
            for key in ("errors",):
                if isinstance(node.get(key), list):
                    walk(node[key])
        elif isinstance(node, list):
            for item in node[:5]:
                walk(item)

    walk(body)
    message = "; ".join(dict.fromkeys(p for p in parts if p))
    return (message or str(body))[:limit]


def raise_for_status(response: Any, provider: str) -> None:
    """Map a non-2xx response to its error kind. 2xx returns None."""
    status = response.status_code
    if 200 <= status < 300:
        return
    detail = error_message(response)
    text = f"{provider}: HTTP {status}: {detail}" if detail else f"{provider}: HTTP {status}"
    if status in (401, 403):
        raise AuthError(text, status=status)
    if status == 429:
        raise RateLimited(text, retry_after_s=retry_after_s(response.headers), status=status)
    if status in (408,) or status >= 500:
        # A gateway timeout means a proxy gave up waiting: the provider
        # behind it may still have acted. Other 5xx refuse the request.
        raise TransientError(text, retry_after_s=retry_after_s(response.headers), status=status,
                             maybe_delivered=status == 504)
    raise ProviderRejected(text, status=status)


def json_body(response: Any, provider: str) -> Any:
    try:
        return response.json()
    except Exception:
        snippet = (response.text or "")[:120]
        raise MalformedResponse(f"{provider}: expected JSON, got {snippet!r}", status=response.status_code) from None


def require(body: Any, key: str, provider: str, kind: type = str) -> Any:
    """`body[key]`, or a MalformedResponse that names the missing or mistyped field."""
    if not isinstance(body, dict) or key not in body:
        raise MalformedResponse(f"{provider}: response has no `{key}`: {str(body)[:120]!r}")
    value = body[key]
    if not isinstance(value, kind):
        raise MalformedResponse(f"{provider}: `{key}` is {type(value).__name__}, expected {kind.__name__}")
    return value


async def send(client: Any, method: str, url: str, provider: str, **kwargs: Any) -> Any:
    """One HTTP request, with transport failures translated. Statuses are left to the caller."""
    httpx = load_httpx()

    try:
        return await client.request(method, url, **kwargs)
    except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        # The request was never written: nothing can have been delivered.
        raise AttemptTimeout(f"{provider}: {type(exc).__name__}: could not connect in time") from None
    except httpx.TimeoutException as exc:
        raise AttemptTimeout(f"{provider}: {type(exc).__name__} after {client.timeout.read}s",
                             maybe_delivered=True) from None
    except httpx.ConnectError as exc:
        raise TransientError(f"{provider}: cannot connect: {exc}") from None
    except httpx.TransportError as exc:
        # Read errors and protocol errors come after the request went out.
        raise TransientError(f"{provider}: {type(exc).__name__}: {exc}", maybe_delivered=True) from None
    except ProviderError:
        raise
