"""Plumbing shared by the crm_sync, lead_enrichment and email_verification
adapters (airtable, hubspot, apollo, dropcontact, zerobounce, neverbounce).

It adds to `actors.adapters.http`:

- `HttpAdapter`: one httpx client per adapter, created on first use (httpx is
  imported lazily) and closed in `close()`; `_send` translates transport
  failures through `http.send` and scrubs secrets from what it raises;
- `preview`: the request a dry run would send, with secrets masked;
- `scrub`: removes secret values from provider text (NeverBounce, for one,
  echoes the API key in its error messages).
"""

from __future__ import annotations

from typing import Any

from actors.adapters.base import Adapter
from actors.adapters.http import HttpSettings, make_client, send
from actors.errors import ProviderError

__all__ = ["LookupSettings", "HttpAdapter", "preview", "scrub", "MASK"]

MASK = "***"


LookupSettings = HttpSettings


def scrub(text: str, secrets: list[str]) -> str:
    """`text` with every secret value replaced by ***."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


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


class HttpAdapter(Adapter):
    """An adapter with one lazily created httpx client. Subclasses give
    `default_headers()` (auth and content type) and map statuses themselves."""

    Settings = LookupSettings

    def __init__(self, settings: LookupSettings, **kw: Any):
        super().__init__(settings, **kw)
        self._client: Any = None

    def default_headers(self) -> dict[str, str]:
        return {}

    @property
    def http(self) -> Any:
        if self._client is None:
            self._client = make_client(self.settings, self.transport, self.default_headers())
        return self._client

    def url(self, path: str) -> str:
        return self.settings.base_url.rstrip("/") + path

    async def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            return await send(self.http, method, path, self.name, **kwargs)
        except ProviderError as exc:
            clean = scrub(exc.message, self.settings.secret_values())
            exc.message = clean
            exc.args = (clean,)
            raise

    def _scrub(self, text: str) -> str:
        return scrub(text, self.settings.secret_values())

    async def call(self, method: str, payload: Any, ctx: Any) -> dict[str, Any]:
        # Whatever the provider echoed (NeverBounce repeats the key in its
        # errors), no secret leaves the adapter in an error message.
        try:
            return await super().call(method, payload, ctx)
        except ProviderError as exc:
            clean = self._scrub(exc.message)
            if clean != exc.message:
                exc.message = clean
                exc.args = (clean,)
            raise

    def _dry(self, method: str, request: dict[str, Any]) -> dict[str, Any]:
        return self.would_send(method, request)

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
