"""X API v2: `publish_post` as the user who granted an OAuth 2.0 token.

Implemented (docs.x.com/x-api/posts/creation-of-a-post, operationId createPosts):
- `POST /2/tweets` `{"text": ...}` with `Authorization: Bearer <user access
  token>` (Authorization Code with PKCE, scopes `tweet.read tweet.write
  users.read`; an app-only bearer token cannot post). 201 answers
  `{"data": {"id", "text"}}`; the value is `{post_id, url}` with the url
  `https://x.com/i/web/status/{id}`, which works without the handle.
- `link` is appended to the text (X has no separate link field; X counts
  every URL as 23 characters). Note that X's pay-per-use pricing charges a
  post with a URL more than one without.
- Text longer than `max_length` (280, X's limit for most accounts) is
  refused before sending: see `weighted_length`.
- Errors come as `application/problem+json` `{title, type, detail, status}`
  or the legacy `{"errors": [{"code", "message"}]}`; both are read by the
  shared `error_message`. A 403 "You are not allowed to create a Tweet with
  duplicate content." (seen in public client issues; X's docs do not list
  it) is a refusal of this text, not a credentials problem.
- 429: `x-rate-limit-reset` (epoch seconds) for the 15-minute window, and
  `x-user-limit-24hour-*` / `x-app-limit-24hour-*` for the daily caps: the
  wait is until the latest reset among the windows that say 0 remaining.

Not implemented: `media_urls` (media must be uploaded first through the
media upload endpoint and sent as `media.media_ids`): skipped, and the value
says so. Replies, quotes, polls, threads are out of scope.

Idempotency: X has none. It refuses a duplicate text with a 403 that does
not name the earlier post, so a resend cannot post twice but cannot be
answered as a success either: `publish_post` is not in
`resends_deduplicated`.

Probe: `GET /2/users/me`. It is read-only; on X's pay-per-use pricing it is
one billable User read, which X deduplicates within a UTC day, so at most
one charge a day (docs.x.com/x-api/getting-started/pricing). X offers no
free "me" endpoint.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Callable
from typing import Any

from pydantic import Field, SecretStr

from actors.adapters.http import HttpAdapter, TlsSettings, error_message, json_body, raise_for_status, require, retry_after_s
from actors.adapters.previews import public_headers
from actors.adapters.social.networks import serve_network
from actors.errors import AuthError, MalformedResponse, ProviderRejected, RateLimited
from actors.messages import CallContext
from actors.payloads import Payload, PublishPost

__all__ = ["XAdapter", "XSettings", "read_tweet_reply", "weighted_length", "x_retry_after"]

NETWORK = "x"
URL_LENGTH = 23
_URL = re.compile(r"https?://\S+", re.IGNORECASE)
# twitter-text v3: code points in these ranges weigh 1, every other weighs 2.
_LIGHT = ((0, 4351), (8192, 8205), (8208, 8223), (8242, 8247))


def weighted_length(text: str) -> int:
    """X's length of a post, approximated.

    X counts "weighted" characters (twitter-text v3 config): the text is NFC
    normalised, a code point in Latin-1 and some general punctuation ranges
    (0-4351, 8192-8205, 8208-8223, 8242-8247) weighs 1, every other code
    point (CJK, most emoji) weighs 2, and every URL weighs 23 whatever its
    length; the limit is 280. We approximate: URLs are only those written
    with http(s)://, and an emoji sequence (ZWJ families, flags, skin tones)
    is counted per code point where X counts it as one emoji (2). So we may
    refuse a few emoji-heavy texts X would take, and X itself still has the
    last word (a 400 becomes ProviderRejected)."""
    text = unicodedata.normalize("NFC", text)
    total = 0
    for part_index, part in enumerate(_URL.split(text)):
        if part_index:
            total += URL_LENGTH
        for ch in part:
            code = ord(ch)
            total += 1 if any(lo <= code <= hi for lo, hi in _LIGHT) else 2
    return total


def x_retry_after(headers: Any, now: float) -> float | None:
    """Seconds until X takes posts again, from its rate-limit headers.

    Every window that says 0 remaining must reset: the 15-minute one
    (`x-rate-limit-*`) and the daily caps (`x-user-limit-24hour-*`,
    `x-app-limit-24hour-*`). Without any exhausted window, the 15-minute
    reset; without any header, Retry-After; else None."""
    waits: list[float] = []
    for prefix in ("x-rate-limit", "x-user-limit-24hour", "x-app-limit-24hour"):
        remaining, reset = headers.get(f"{prefix}-remaining"), headers.get(f"{prefix}-reset")
        if remaining is None or reset is None or remaining.strip() != "0":
            continue
        try:
            waits.append(max(0.0, float(reset) - now))
        except ValueError:
            continue
    if waits:
        return max(waits)
    reset = headers.get("x-rate-limit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            pass
    return retry_after_s(headers, now)


def read_tweet_reply(response: Any, provider: str, now: float) -> dict[str, Any]:
    """The one place a reply to POST /2/tweets becomes a value or an error kind."""
    status = response.status_code
    if 200 <= status < 300:
        data = require(json_body(response, provider), "data", provider, dict)
        post_id = require(data, "id", provider, str)
        if not post_id:
            raise MalformedResponse(f"{provider}: `data.id` is empty", status=status)
        return {"post_id": post_id, "url": f"https://x.com/i/web/status/{post_id}"}
    detail = error_message(response)
    if status == 401:
        raise AuthError(f"{provider}: HTTP 401: {detail}: the user access token is invalid or expired (they last 2 "
                        f"hours unless refreshed with the offline.access scope); renew settings.access_token",
                        status=status)
    if status == 403:
        if "duplicate" in detail.lower():
            raise ProviderRejected(f"{provider}: HTTP 403: {detail} (X already has a post with this text; it does not "
                                   f"say which)", status=status)
        raise AuthError(f"{provider}: HTTP 403: {detail}: posting needs a user token with the tweet.write scope "
                        f"from an app with read and write permission", status=status)
    if status == 429:
        raise RateLimited(f"{provider}: HTTP 429: {detail}", retry_after_s=x_retry_after(response.headers, now),
                          status=status)
    raise_for_status(response, provider)
    raise MalformedResponse(f"{provider}: unexpected HTTP {status}", status=status)


class XSettings(TlsSettings):
    base_url: str = Field("https://api.x.com", description="API root")
    access_token: SecretStr = Field(description="OAuth 2.0 user access token with tweet.write")
    max_length: int = Field(280, ge=1, description="weighted length limit checked before sending")


class XAdapter(HttpAdapter):
    name = "x"
    Settings = XSettings
    capabilities = frozenset({"social_posting"})
    auth_settings = ("access_token",)
    has_probe = True
    resends_deduplicated = frozenset()

    settings: XSettings

    def __init__(self, settings: XSettings, *, clock: Callable[[], float] = time.time, **kw: Any):
        super().__init__(settings, **kw)
        self._clock = clock


    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.settings.access_token.get_secret_value()}",
                "Content-Type": "application/json"}

    def _body(self, payload: PublishPost) -> tuple[dict[str, Any], dict[str, Any]]:
        text = f"{payload.text}\n{payload.link}" if payload.link else payload.text
        length = weighted_length(text)
        if length > self.settings.max_length:
            raise ProviderRejected(f"{self.provider}: the post is {length} characters as X counts them "
                                   f"(URLs 23, most non-Latin characters and emoji 2); the limit is "
                                   f"{self.settings.max_length}")
        extra: dict[str, Any] = {}
        if payload.media_urls:
            extra["skipped_media"] = list(payload.media_urls)
            extra["note"] = "X needs media uploaded before posting, which this adapter does not implement"
        return {"text": text}, extra

    async def publish_post(self, payload: PublishPost, ctx: CallContext) -> dict[str, Any]:
        serve_network(self.provider, payload.network, {NETWORK})
        body, extra = self._body(payload)
        response = await self._send("POST", "/2/tweets", headers=self._headers(), json=body)
        return {**read_tweet_reply(response, self.provider, self._clock()), **extra}

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        out = await super().dry_run(method, payload, ctx)
        if isinstance(payload, PublishPost):
            serve_network(self.provider, payload.network, {NETWORK})
            body, extra = self._body(payload)
            out["would_send"] = {"method": "POST", "url": f"{self.settings.base_url}/2/tweets",
                                 "headers": public_headers(self._headers()), "json": body}
            out.update(extra)
        return out

    async def probe(self) -> None:
        response = await self._send("GET", "/2/users/me", headers=self._headers())
        status = response.status_code
        if status in (401, 403):
            raise AuthError(f"{self.provider}: HTTP {status} on /2/users/me: {error_message(response)}: check "
                            f"settings.access_token (a user token with users.read)", status=status)
        if status == 429:
            raise RateLimited(f"{self.provider}: HTTP 429 on /2/users/me",
                              retry_after_s=x_retry_after(response.headers, self._clock()), status=status)
        raise_for_status(response, self.provider)
        data = require(json_body(response, self.provider), "data", self.provider, dict)
        require(data, "id", self.provider, str)
