"""What every HTTP adapter shares: one base (`HttpAdapter`) that owns the
adapter's one httpx client (made on first use, with the settings' timeout
and TLS, closed with the adapter) and sends through the one table of httpx
exceptions (`HTTPX_ERRORS`); and the translation of HTTP statuses into our
error kinds (`raise_for_status`).

Each adapter still decides what a provider's body means (Dropcontact and
NeverBounce report errors inside HTTP 200s); this module handles what every
HTTP API has in common. The transport is injectable: pass
`httpx.MockTransport(handler)` in unit tests.
"""

from __future__ import annotations

import email.utils
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field

from actors.adapters.base import Adapter, AdapterSettings
from actors.adapters.errormap import RAISE, ExceptionMap
from actors.adapters.tls import httpx_verify
from actors.errors import (
    AttemptTimeout,
    AuthError,
    MalformedResponse,
    ProviderError,
    ProviderRejected,
    RateLimited,
    TransientError,
)

if TYPE_CHECKING:
    import httpx

    HttpTransport = httpx.AsyncBaseTransport   # httpx.MockTransport(handler) in tests

__all__ = ["HTTPX_ERRORS", "HttpAdapter", "HttpSettings", "TlsSettings", "error_message", "json_body", "load_httpx",
           "make_client", "raise_for_status", "require", "retry_after_s", "send"]


class TlsSettings(AdapterSettings):
    """An HTTP client's settings, for adapters that post to a full URL of their own (webhooks)."""

    timeout_s: float = Field(default=15.0, gt=0, description="the most one HTTP request may take")
    verify_tls: bool = Field(default=True, description="verify the server's TLS certificate")
    ca_file: str | None = Field(default=None, description="PEM file of extra CAs to trust (private endpoints, tests)")


class HttpSettings(AdapterSettings):
    """An HTTP API's settings: its base URL, then the client's."""

    base_url: str
    timeout_s: float = TlsSettings.model_fields["timeout_s"]
    verify_tls: bool = TlsSettings.model_fields["verify_tls"]
    ca_file: str | None = TlsSettings.model_fields["ca_file"]


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
                base_url: str | None = None, auth: Any = None, provider: str = "http") -> "httpx.AsyncClient":
    """One client per adapter. Redirects are not followed: a provider that
    moved answers 3xx, which is an error to report, not a hop to take."""
    return load_httpx().AsyncClient(
        base_url=settings.base_url if base_url is None else base_url,
        timeout=settings.timeout_s,
        verify=httpx_verify(settings, provider),
        transport=transport,
        headers=headers or {},
        auth=auth,
        follow_redirects=False,
    )


class HttpAdapter(Adapter):
    """The base of every adapter that talks HTTP. It owns the adapter's one
    client: made on first use (so httpx is imported only by the provider
    actors that talk HTTP) from `client_options()`, reused, closed with the
    adapter. `_send` makes one request with transport failures translated
    (HTTPX_ERRORS); statuses and bodies are the subclass's to read
    (`raise_for_status`, `json_body`, `require`). Secrets in what it raises
    are masked by Adapter (base.py)."""

    transport: "HttpTransport | None"

    def __init__(self, settings: AdapterSettings, **kw: Any):
        super().__init__(settings, **kw)
        self._client: Any = None

    def default_headers(self) -> dict[str, str]:
        """Headers of every request (auth, content type)."""
        return {}

    def client_options(self) -> dict[str, Any]:
        """The client's base URL (`settings.base_url`, or none for adapters
        that post to a full URL), headers and auth."""
        return {"base_url": getattr(self.settings, "base_url", ""), "headers": self.default_headers()}

    @property
    def http(self) -> "httpx.AsyncClient":
        if self._client is None:
            self._client = make_client(self.settings, self.transport, provider=self.provider, **self.client_options())
        return self._client

    def url(self, path: str) -> str:
        return getattr(self.settings, "base_url", "").rstrip("/") + path

    async def _send(self, method: str, url: str, **kwargs: Any) -> "httpx.Response":
        return await send(self.http, method, url, self.provider, **kwargs)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
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


@dataclass(frozen=True)
class HttpCall:
    """What a rule of HTTPX_ERRORS knows of the request that failed."""

    provider: str
    client: Any


def _connect_timeout(exc: BaseException, at: HttpCall) -> ProviderError:
    # The request was never written: nothing can have been delivered.
    return AttemptTimeout(f"{at.provider}: {type(exc).__name__}: could not connect in time")


def _timeout(exc: BaseException, at: HttpCall) -> ProviderError:
    return AttemptTimeout(f"{at.provider}: {type(exc).__name__} after {at.client.timeout.read}s", maybe_delivered=True)


def _cannot_connect(exc: BaseException, at: HttpCall) -> ProviderError:
    return TransientError(f"{at.provider}: cannot connect: {exc}")


def _after_sending(exc: BaseException, at: HttpCall) -> ProviderError:
    # Read errors and protocol errors come after the request went out.
    return TransientError(f"{at.provider}: {type(exc).__name__}: {exc}", maybe_delivered=True)


# Every exception httpx exports. Those left RAISE are not raised by a
# request of ours (we neither follow redirects, stream, nor raise for
# status: statuses are read by raise_for_status below), or mean a bug.
HTTPX_ERRORS: ExceptionMap[HttpCall] = ExceptionMap("httpx", {
    "ConnectTimeout": _connect_timeout,
    "PoolTimeout": _connect_timeout,
    "ReadTimeout": _timeout,
    "WriteTimeout": _timeout,
    "TimeoutException": _timeout,
    "ConnectError": _cannot_connect,
    "ReadError": _after_sending,
    "WriteError": _after_sending,
    "CloseError": _after_sending,
    "NetworkError": _after_sending,
    "RemoteProtocolError": _after_sending,
    "LocalProtocolError": _after_sending,
    "ProtocolError": _after_sending,
    "ProxyError": _after_sending,
    "UnsupportedProtocol": _after_sending,
    "TransportError": _after_sending,
    "DecodingError": RAISE,
    "TooManyRedirects": RAISE,
    "RequestError": RAISE,
    "HTTPStatusError": RAISE,
    "HTTPError": RAISE,
    "InvalidURL": RAISE,
    "CookieConflict": RAISE,
    "StreamError": RAISE,
    "StreamConsumed": RAISE,
    "StreamClosed": RAISE,
    "ResponseNotRead": RAISE,
    "RequestNotRead": RAISE,
})


async def send(client: Any, method: str, url: str, provider: str, **kwargs: Any) -> Any:
    """One HTTP request, with transport failures translated. Statuses are left to the caller."""
    load_httpx()
    try:
        return await client.request(method, url, **kwargs)
    except Exception as exc:  # noqa: BLE001 - sorted by the table; what it does not cover is raised as is
        raise HTTPX_ERRORS.translate(exc, HttpCall(provider, client)) from None
