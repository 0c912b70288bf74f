"""Reply fetching through the Gmail REST API (v1), with an OAuth 2.0 bearer token.

What we rely on, from Google's documentation:
- `GET /gmail/v1/users/{userId}/messages?q=&maxResults=&pageToken=` lists
  `{messages: [{id, threadId}], nextPageToken, resultSizeEstimate}`;
  maxResults defaults to 100, at most 500; `messages` is absent when nothing
  matches (developers.google.com/gmail/api/reference/rest/v1/users.messages/list).
- `GET /gmail/v1/users/{userId}/messages/{id}?format=raw` returns the whole
  RFC 2822 message base64url-encoded in `raw`, and `internalDate` (epoch ms,
  as a string) (…/users.messages/get, …/rest/v1/Format).
- `q` takes Gmail's search syntax; dates in `after:` are read as midnight PST
  unless given in epoch seconds, so we send seconds (…/guides/filtering).
- Errors: `{"error": {"code", "message", "errors": [{"domain", "reason",
  "message"}], "status"}}`; 401 authError (expired or invalid token); 403
  with reason rateLimitExceeded / userRateLimitExceeded / dailyLimitExceeded
  for quotas, other 403s for permissions (insufficient scope, domain policy);
  429 for per-user limits, sometimes with "Retry after <time>" in the message;
  5xx backendError (…/guides/handle-errors, …/reference/quota).
- Token refresh: `POST https://oauth2.googleapis.com/token`, form-encoded
  `client_id, client_secret, refresh_token, grant_type=refresh_token`, answers
  `{access_token, expires_in, scope, token_type}`; failures are RFC 6749 5.2
  bodies such as `{"error": "invalid_grant"}` (Google's OAuth 2.0 web-server
  guide, "Refreshing an access token").
- Probe: `GET /gmail/v1/users/me/profile` (1 quota unit, reads no mail).

The query: `in:inbox` for INBOX or `label:<name>` for another mailbox, then
`is:unread` (setting `search: unseen`, the default), then `after:<epoch s>`
from `since`, then the operator's own `query`. `after:` is exact to the
second, and we filter by `internalDate` again anyway. Replies come newest
first. With `mark_seen: true` the returned messages lose their UNREAD label
(`POST …/messages/batchModify`, needs the gmail.modify scope); a failure there
is reported in the value, never as a failed fetch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import time
from datetime import datetime, timezone
from typing import Any, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, field_validator, model_validator

from actors.adapters.http import HttpAdapter, HttpSettings, error_message, json_body, retry_after_s
from actors.adapters.replies._mail_parsing import iso_utc, parse_reply, parse_time
from actors.errors import (
    AttemptTimeout,
    AuthError,
    MalformedResponse,
    ProviderError,
    ProviderRejected,
    RateLimited,
    TransientError,
)
from actors.messages import CallContext
from actors.payloads import FetchReplies, Payload

__all__ = ["GmailApiAdapter", "GmailApiSettings", "build_query", "classify_google_error"]

_RATE_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded", "dailyLimitExceeded", "quotaExceeded"})
_RETRY_AFTER_TEXT = re.compile(r"retry after\s+(\d{4}-\d{2}-\d{2}T[\d:.]+Z?)", re.IGNORECASE)
# Gmail message ids are hexadecimal (e.g. 18c0f5e2a3b4c5d6); letters, digits, - and _
# cover any URL-safe id a compatible server could use, and nothing that changes a path.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")
_REFRESH_MARGIN_S = 60.0  # refresh this long before Google says the token expires


class GmailApiSettings(HttpSettings):
    base_url: str = "https://gmail.googleapis.com"
    token_url: str = "https://oauth2.googleapis.com/token"
    user_id: str = "me"
    access_token: SecretStr | None = None
    client_id: str | None = None
    client_secret: SecretStr | None = None
    refresh_token: SecretStr | None = None
    search: Literal["unseen", "all"] = "unseen"
    query: str = Field("", description="more Gmail search terms, e.g. '-from:me'")
    include_spam_trash: bool = False
    mark_seen: bool = False
    concurrency: int = Field(4, ge=1, le=20, description="messages.get requests in flight at once")

    @field_validator("access_token", "client_id", "client_secret", "refresh_token", mode="before")
    @classmethod
    def _empty_is_absent(cls, value: Any) -> Any:
        # `${GMAIL_ACCESS_TOKEN:-}` in a config gives "": no token, not an empty one.
        return None if value == "" else value

    @model_validator(mode="after")
    def _some_credentials(self) -> "GmailApiSettings":
        refresh = (self.client_id, self.client_secret, self.refresh_token)
        if any(v is not None for v in refresh) and not all(v is not None for v in refresh):
            raise ValueError("refreshing needs all of `client_id`, `client_secret` and `refresh_token`")
        if self.access_token is None and self.refresh_token is None:
            raise ValueError("give `access_token`, or `client_id` + `client_secret` + `refresh_token`")
        return self

    @property
    def can_refresh(self) -> bool:
        return self.refresh_token is not None


# --- pure helpers -------------------------------------------------------------------
def build_query(settings: GmailApiSettings, mailbox: str, since: datetime | None) -> str:
    terms: list[str] = []
    if mailbox.upper() == "INBOX":
        terms.append("in:inbox")
    elif mailbox:
        # Gmail's search writes a label's spaces as hyphens (label:my-label).
        terms.append("label:" + re.sub(r"\s+", "-", mailbox.strip()))
    if settings.search == "unseen":
        terms.append("is:unread")
    if since is not None:
        terms.append(f"after:{int(since.timestamp())}")
    if settings.query.strip():
        terms.append(settings.query.strip())
    return " ".join(terms)


def _google_error(response: Any) -> tuple[str, list[str], str]:
    """(message, reasons, status) from Google's error body; tolerant of any body."""
    try:
        body = response.json()
    except Exception:  # noqa: BLE001
        return error_message(response), [], ""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        reasons = [e.get("reason") for e in error.get("errors") or [] if isinstance(e, dict) and e.get("reason")]
        message = error.get("message") if isinstance(error.get("message"), str) else error_message(response)
        return message, [str(r) for r in reasons], str(error.get("status") or "")
    if isinstance(error, str):  # the OAuth token endpoint: {"error": "invalid_grant", "error_description": …}
        description = body.get("error_description") if isinstance(body, dict) else None
        return f"{error}: {description}" if description else error, [error], ""
    return error_message(response), [], ""


def _retry_after(response: Any, message: str, now: float | None = None) -> float | None:
    seconds = retry_after_s(response.headers, now)
    if seconds is not None:
        return seconds
    match = _RETRY_AFTER_TEXT.search(message or "")
    if match:
        try:
            at = parse_time(match.group(1))
        except ValueError:
            return None
        return max(0.0, at.timestamp() - (time.time() if now is None else now))
    return None


def classify_google_error(response: Any, provider: str, what: str) -> ProviderError:
    """A non-2xx answer of the Gmail API or Google's token endpoint as our error kind.
    The one place where Google's statuses and reasons become our kinds."""
    status = response.status_code
    message, reasons, grpc_status = _google_error(response)
    text = f"{provider}: {what}: HTTP {status}: {message}" if message else f"{provider}: {what}: HTTP {status}"
    if reasons:
        text += f" (reason: {', '.join(dict.fromkeys(reasons))})"
    rate = bool(_RATE_REASONS.intersection(reasons)) or grpc_status == "RESOURCE_EXHAUSTED"
    if status == 429 or (status == 403 and rate):
        return RateLimited(text, retry_after_s=_retry_after(response, message), status=status)
    if status in (401, 403):
        return AuthError(text, status=status)
    if status == 400 and reasons and reasons[0] in ("invalid_grant", "invalid_client", "unauthorized_client"):
        return AuthError(text, status=status)  # the refresh token or client was refused
    if status == 408 or status >= 500:
        return TransientError(text, retry_after_s=_retry_after(response, message), status=status)
    return ProviderRejected(text, status=status)


def decode_raw(value: Any, provider: str, message_id: str) -> bytes:
    """Gmail's base64url `raw`, padding optional."""
    if not isinstance(value, str):
        raise MalformedResponse(f"{provider}: message {message_id} has no `raw` string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise MalformedResponse(f"{provider}: message {message_id}: `raw` is not base64url") from None


def _internal_date(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value) / 1000, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


async def _gather_first_error(coros: list[Any]) -> list[Any]:
    """Run concurrently; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    if not tasks:
        return []
    try:
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    except asyncio.CancelledError:
        for t in tasks:
            t.cancel()
        raise
    for t in pending:
        t.cancel()
    for t in tasks:
        if t in done and t.exception() is not None:
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            raise t.exception()  # type: ignore[misc]
    return [t.result() for t in tasks]


# --- the adapter -------------------------------------------------------------------
class GmailApiAdapter(HttpAdapter):
    name = "gmail_api"
    Settings = GmailApiSettings
    capabilities = frozenset({"reply_fetching"})
    auth_settings = ("access_token", "client_id", "client_secret", "refresh_token")
    has_probe = True
    resends_deduplicated = frozenset({"fetch_replies"})  # a read: asking again cannot act twice

    def __init__(self, settings: GmailApiSettings, *, clock: Any = time.monotonic, **kw: Any):
        super().__init__(settings, **kw)
        self._clock = clock
        self._token: str | None = settings.access_token.get_secret_value() if settings.access_token else None
        self._token_expires_at: float | None = None  # unknown for a configured token
        self._refreshing: asyncio.Lock | None = None

    # --- plumbing ------------------------------------------------------------------
    def _path(self, suffix: str) -> str:
        from urllib.parse import quote

        return f"/gmail/v1/users/{quote(self.settings.user_id, safe='@')}{suffix}"

    def _token_fresh(self) -> bool:
        if self._token is None:
            return False
        return self._token_expires_at is None or self._clock() < self._token_expires_at - _REFRESH_MARGIN_S

    async def _access_token(self, *, force_refresh: bool = False, stale: str | None = None) -> str:
        if not force_refresh and self._token_fresh():
            assert self._token is not None
            return self._token
        if not self.settings.can_refresh:
            if self._token is None:
                raise AuthError(f"{self.provider}: no access token, and no refresh token to get one")
            return self._token
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        async with self._refreshing:
            # Another call may have refreshed while we waited.
            if self._token is not None and self._token != stale and self._token_fresh():
                return self._token
            await self._refresh()
        assert self._token is not None
        return self._token

    async def _refresh(self) -> None:
        s = self.settings
        assert s.client_id is not None and s.client_secret is not None and s.refresh_token is not None
        form = {
            "client_id": s.client_id,
            "client_secret": s.client_secret.get_secret_value(),
            "refresh_token": s.refresh_token.get_secret_value(),
            "grant_type": "refresh_token",
        }
        response = await self._send("POST", s.token_url, data=form)
        if not 200 <= response.status_code < 300:
            error = classify_google_error(response, self.provider, "token refresh")
            if isinstance(error, ProviderRejected):  # any other 4xx from the token endpoint is about credentials
                error = AuthError(error.message, status=error.status)
            raise error
        body = json_body(response, self.provider)
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise MalformedResponse(f"{self.provider}: token refresh answered without `access_token`")
        expires_in = body.get("expires_in")
        self._token = token
        self._token_expires_at = self._clock() + float(expires_in) if isinstance(expires_in, (int, float)) else None

    async def _get(self, path: str, what: str, params: Any = None, *, deadline: float | None = None) -> Any:
        """GET with the bearer token; on a 401 refresh once (when we can) and try again."""
        token = await self._access_token()
        for attempt in (1, 2):
            if deadline is not None and time.monotonic() >= deadline:
                raise AttemptTimeout(f"{self.provider}: {what}: the attempt's time ran out")
            response = await self._send("GET", path, params=params,
                                  headers={"Authorization": f"Bearer {token}"})
            if response.status_code == 401 and attempt == 1 and self.settings.can_refresh:
                token = await self._access_token(force_refresh=True, stale=token)
                continue
            return response
        return response  # pragma: no cover - the loop always returns

    # --- the method ----------------------------------------------------------------
    async def fetch_replies(self, payload: FetchReplies, ctx: CallContext) -> dict[str, Any]:
        deadline = time.monotonic() + ctx.timeout_s
        since = parse_time(payload.since) if payload.since else None
        query = build_query(self.settings, payload.mailbox, since)
        ids = await self._list(query, payload.limit, deadline)
        limiter = asyncio.Semaphore(self.settings.concurrency)

        async def one(message_id: str) -> dict[str, Any] | None:
            async with limiter:
                return await self._message(message_id, deadline)

        fetched = await _gather_first_error([one(i) for i in ids])
        replies = [r for r in fetched if r is not None]
        if since is not None:
            replies = [r for r in replies if r["received_at"] is None or parse_time(r["received_at"]) >= since]
        replies.sort(key=lambda r: r["received_at"] or "", reverse=True)
        replies = replies[:payload.limit]
        marked = False
        if self.settings.mark_seen and replies:
            marked = await self._mark_seen([r["gmail_id"] for r in replies])
        return {"replies": replies, "mailbox": payload.mailbox, "query": query, "order": "newest_first",
                "marked_seen": marked}

    async def _list(self, query: str, limit: int, deadline: float) -> list[str]:
        ids: list[str] = []
        page_token: str | None = None
        while len(ids) < limit:
            params: dict[str, Any] = {"q": query, "maxResults": min(500, limit - len(ids))}
            if page_token:
                params["pageToken"] = page_token
            if self.settings.include_spam_trash:
                params["includeSpamTrash"] = "true"
            response = await self._get(self._path("/messages"), "messages.list", params, deadline=deadline)
            if not 200 <= response.status_code < 300:
                raise classify_google_error(response, self.provider, "messages.list")
            body = json_body(response, self.provider)
            if not isinstance(body, dict):
                raise MalformedResponse(f"{self.provider}: messages.list answered {type(body).__name__}, not an object")
            messages = body.get("messages", [])
            if not isinstance(messages, list):
                raise MalformedResponse(f"{self.provider}: messages.list `messages` is {type(messages).__name__}")
            for item in messages:
                if not isinstance(item, dict) or not isinstance(item.get("id"), str):
                    raise MalformedResponse(f"{self.provider}: messages.list item without an `id`: {str(item)[:80]}")
                if not _MESSAGE_ID.fullmatch(item["id"]):
                    # The id goes into the URL path with our bearer token: one like
                    # `../../admin/x` would send the token to another endpoint.
                    raise MalformedResponse(f"{self.provider}: messages.list gave an id that is not a Gmail message "
                                            f"id: {item['id'][:80]!r}")
                if item["id"] not in ids:
                    ids.append(item["id"])
            page_token = body.get("nextPageToken")
            if not isinstance(page_token, str) or not page_token or not messages:
                break
        return ids[:limit]

    async def _message(self, message_id: str, deadline: float) -> dict[str, Any] | None:
        response = await self._get(self._path(f"/messages/{quote(message_id, safe='')}"), "messages.get", {"format": "raw"},
                                   deadline=deadline)
        if response.status_code == 404:
            return None  # deleted between list and get: not a reply any more
        if not 200 <= response.status_code < 300:
            raise classify_google_error(response, self.provider, "messages.get")
        body = json_body(response, self.provider)
        if not isinstance(body, dict):
            raise MalformedResponse(f"{self.provider}: messages.get answered {type(body).__name__}, not an object")
        raw = decode_raw(body.get("raw"), self.provider, message_id)
        arrived = _internal_date(body.get("internalDate"))
        reply = parse_reply(raw, received_at=arrived, fallback_id=f"gmail-{message_id}")
        reply["gmail_id"] = message_id
        reply["thread_id"] = body.get("threadId") if isinstance(body.get("threadId"), str) else None
        labels = body.get("labelIds")
        reply["labels"] = [str(label) for label in labels] if isinstance(labels, list) else []
        return reply

    async def _mark_seen(self, ids: list[str]) -> bool:
        try:
            token = await self._access_token()
            response = await self._send("POST", self._path("/messages/batchModify"),
                                  json={"ids": ids, "removeLabelIds": ["UNREAD"]},
                                  headers={"Authorization": f"Bearer {token}"})
        except ProviderError:
            return False
        return 200 <= response.status_code < 300

    # --- dry run, probe, close ----------------------------------------------------------
    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        assert isinstance(payload, FetchReplies)
        s = self.settings
        since = parse_time(payload.since) if payload.since else None
        query = build_query(s, payload.mailbox, since)
        requests: list[dict[str, Any]] = []
        if not self._token_fresh() and s.can_refresh:
            requests.append({"method": "POST", "url": s.token_url,
                             "form": {"client_id": s.client_id, "client_secret": "<removed>",
                                      "refresh_token": "<removed>", "grant_type": "refresh_token"}})
        requests.append({"method": "GET", "url": s.base_url.rstrip("/") + self._path("/messages"),
                         "params": {"q": query, "maxResults": min(500, payload.limit)},
                         "headers": {"Authorization": "Bearer <removed>"}})
        requests.append({"method": "GET", "url": s.base_url.rstrip("/") + self._path("/messages/{id}"),
                         "params": {"format": "raw"}, "for_each": "listed message",
                         "headers": {"Authorization": "Bearer <removed>"}})
        if s.mark_seen:
            requests.append({"method": "POST", "url": s.base_url.rstrip("/") + self._path("/messages/batchModify"),
                             "json": {"ids": ["<returned ids>"], "removeLabelIds": ["UNREAD"]}})
        return self.would_send(method, {"requests": requests, "query": query,
                                        "since": iso_utc(since) if since else None, "limit": payload.limit})

    async def probe(self) -> None:
        """GET users/me/profile: checks the token and the scope, reads no mail (1 quota unit)."""
        response = await self._get(self._path("/profile"), "users.getProfile")
        if not 200 <= response.status_code < 300:
            raise classify_google_error(response, self.provider, "users.getProfile")
        body = json_body(response, self.provider)
        if not isinstance(body, dict) or not isinstance(body.get("emailAddress"), str):
            raise MalformedResponse(f"{self.provider}: users.getProfile answered without `emailAddress`")

