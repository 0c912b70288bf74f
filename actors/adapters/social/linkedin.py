"""LinkedIn Posts API: `publish_post` as a member or an organization.

Implemented (learn.microsoft.com/linkedin/marketing/community-management/shares/posts-api):
- `POST /rest/posts` with `LinkedIn-Version: YYYYMM` (setting `version`),
  `X-Restli-Protocol-Version: 2.0.0` and a 3-legged Bearer token. The body is
  the documented text post: author, commentary, visibility, distribution
  (MAIN_FEED), lifecycleState PUBLISHED, isReshareDisabledByAuthor.
- `link` becomes an article post, `content.article {source, title}`. The
  Article Post API does not scrape URLs: the caller sets the card's fields.
  `source` and `title` are what public clients send (title is required by
  the API; the payload has no title, so the link itself is the title); the
  thumbnail is an image URN from the Images API and is left out.
- 201 Created: the post URN is in the `x-restli-id` header; the value is
  `{post_id: urn, url: https://www.linkedin.com/feed/update/{urn}/}`.
- 422 DUPLICATE_POST ("Content is a duplicate of urn:li:share:...") means the
  same author already posted this commentary: it is answered as a success
  naming that URN, with `duplicate: true`. So sending a post again cannot
  publish it twice, and `publish_post` is in `resends_deduplicated`.
- Commentary is in LinkedIn's "little" text format, where `| { } @ [ ] ( )
  < > \\ * _ ~` are reserved: with `commentary_format: plain` (the default)
  they are escaped so the text shows as written. `#` is left alone so
  hashtags stay hashtags. `little` sends the text as is (mentions).

Not implemented: `media_urls`. Images need the Images API upload flow
(initializeUpload, an upload of the bytes, then `content.media.id`), which is
several requests and a download per image: they are skipped and the value
says so (`skipped_media`). Polls, documents, videos, reshares are out of scope.

Rate limits are per 24 h (reset at midnight UTC) and unpublished; a 429
carries no Retry-After or reset header, so `retry_after_s` is None unless a
Retry-After appears.

Probe: `GET /v2/userinfo` (OpenID Connect), free and read-only. It needs the
`openid profile` scopes ("Sign In with LinkedIn using OpenID Connect"
product); a token with only `w_member_social` gets 403 there although it can
post: set `probe_path` to another free endpoint the token may read.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator

from actors.adapters.http import HttpAdapter, TlsSettings, error_message, raise_for_status, retry_after_s
from actors.adapters.previews import public_headers
from actors.adapters.social.networks import serve_network
from actors.errors import AuthError, MalformedResponse, RateLimited
from actors.messages import CallContext
from actors.payloads import Payload, PublishPost

__all__ = ["LinkedInAdapter", "LinkedInSettings", "escape_little", "feed_url", "read_post_reply"]

NETWORK = "linkedin"
RESTLI_PROTOCOL = "2.0.0"
_RESERVED = re.compile(r"([\\|{}@\[\]()<>*_~])")
_POST_URN = re.compile(r"urn:li:(?:share|ugcPost):[0-9]+")


class LinkedInSettings(TlsSettings):
    base_url: str = Field("https://api.linkedin.com", description="API root")
    access_token: SecretStr = Field(description="3-legged OAuth access token (w_member_social or w_organization_social)")
    author: str = Field(pattern=r"^urn:li:(person|organization):[A-Za-z0-9_-]+$",
                        description="urn:li:person:{id} (the OIDC `sub`) or urn:li:organization:{id}")
    version: str = Field("202601", pattern=r"^[0-9]{6}$", description="LinkedIn-Version header, YYYYMM")
    visibility: Literal["PUBLIC", "CONNECTIONS", "LOGGED_IN"] = "PUBLIC"
    commentary_format: Literal["plain", "little"] = Field(
        "plain", description="plain: escape little-format reserved characters; little: send as is")
    probe_path: str = Field("/v2/userinfo", description="free read-only endpoint the probe GETs")

    @field_validator("version", mode="before")
    @classmethod
    def _yaml_number(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value  # `version: 202601`


def escape_little(text: str) -> str:
    """Plain text as little-format commentary: reserved characters escaped, `#` kept for hashtags."""
    return _RESERVED.sub(r"\\\1", text)


def feed_url(urn: str) -> str:
    return f"https://www.linkedin.com/feed/update/{urn}/"


def _json(response: Any) -> Any:
    try:
        return response.json()
    except Exception:
        return None


def _input_error_codes(body: Any) -> list[str]:
    if not isinstance(body, dict):
        return []
    codes = [body.get("code")]
    details = body.get("errorDetails")
    if isinstance(details, dict) and isinstance(details.get("inputErrors"), list):
        codes += [e.get("code") for e in details["inputErrors"] if isinstance(e, dict)]
    return [c for c in codes if isinstance(c, str)]


def _permission_hint(author: str) -> str:
    if author.startswith("urn:li:organization:"):
        return (f"posting as {author} needs the w_organization_social permission, and the member who granted "
                f"the token needs the ADMINISTRATOR, DIRECT_SPONSORED_CONTENT_POSTER or CONTENT_ADMIN role on it")
    return f"posting as {author} needs the w_member_social permission (product \"Share on LinkedIn\")"


def read_post_reply(response: Any, author: str, provider: str) -> dict[str, Any]:
    """The one place a reply to POST /rest/posts becomes a value or an error kind."""
    status = response.status_code
    if 200 <= status < 300:
        urn = response.headers.get("x-restli-id", "")
        if not urn.startswith("urn:li:"):
            raise MalformedResponse(f"{provider}: HTTP {status} without a post URN in x-restli-id (got {urn[:80]!r})",
                                    status=status)
        return {"post_id": urn, "url": feed_url(urn), "duplicate": False}
    body = _json(response)
    detail = error_message(response)
    if status == 422 and "DUPLICATE_POST" in _input_error_codes(body):
        # "Content is a duplicate of urn:li:share:...": already posted.
        found = _POST_URN.search(detail) or _POST_URN.search(str(body))
        urn = found.group(0) if found else None
        return {"post_id": urn, "url": feed_url(urn) if urn else None, "duplicate": True}
    if status == 401:
        raise AuthError(f"{provider}: HTTP 401: {detail}: the access token is invalid, expired (they last 60 days) "
                        f"or revoked; renew settings.access_token", status=status)
    if status == 403:
        raise AuthError(f"{provider}: HTTP 403: {detail}: {_permission_hint(author)}", status=status)
    if status == 426:
        # NONEXISTENT_VERSION: every request will fail until the setting changes.
        raise AuthError(f"{provider}: HTTP 426: {detail}: set settings.version to an active LinkedIn-Version "
                        f"(YYYYMM; LinkedIn keeps versions for about a year)", status=status)
    if status == 429:
        # Daily quotas, unpublished; LinkedIn sends no reset time.
        raise RateLimited(f"{provider}: HTTP 429: {detail}", retry_after_s=retry_after_s(response.headers), status=status)
    raise_for_status(response, provider)  # 400/422 rejected (the provider's message), 5xx transient
    raise MalformedResponse(f"{provider}: unexpected HTTP {status}", status=status)  # 1xx/3xx


class LinkedInAdapter(HttpAdapter):
    name = "linkedin"
    Settings = LinkedInSettings
    capabilities = frozenset({"social_posting"})
    auth_settings = ("access_token", "author", "version")
    has_probe = True
    resends_deduplicated = frozenset({"publish_post"})

    settings: LinkedInSettings


    def _headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.settings.access_token.get_secret_value()}",
            "LinkedIn-Version": self.settings.version,
            "X-Restli-Protocol-Version": RESTLI_PROTOCOL,
            "Content-Type": "application/json",
        }

    def _body(self, payload: PublishPost) -> tuple[dict[str, Any], dict[str, Any]]:
        """The request body, and what the value should say about what was left out."""
        s = self.settings
        text = escape_little(payload.text) if s.commentary_format == "plain" else payload.text
        body: dict[str, Any] = {
            "author": s.author,
            "commentary": text,
            "visibility": s.visibility,
            "distribution": {"feedDistribution": "MAIN_FEED", "targetEntities": [], "thirdPartyDistributionChannels": []},
            "lifecycleState": "PUBLISHED",
            "isReshareDisabledByAuthor": False,
        }
        if payload.link:
            body["content"] = {"article": {"source": payload.link, "title": payload.link}}
        extra: dict[str, Any] = {}
        if payload.media_urls:
            extra["skipped_media"] = list(payload.media_urls)
            extra["note"] = "images need LinkedIn's Images API upload flow, which this adapter does not implement"
        return body, extra

    async def publish_post(self, payload: PublishPost, ctx: CallContext) -> dict[str, Any]:
        serve_network(self.provider, payload.network, {NETWORK})
        body, extra = self._body(payload)
        response = await self._send("POST", "/rest/posts", headers=self._headers(), json=body)
        return {**read_post_reply(response, self.settings.author, self.provider), **extra}

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        out = await super().dry_run(method, payload, ctx)
        if isinstance(payload, PublishPost):
            serve_network(self.provider, payload.network, {NETWORK})
            body, extra = self._body(payload)
            out["would_send"] = {"method": "POST", "url": f"{self.settings.base_url}/rest/posts",
                                 "headers": public_headers(self._headers()), "json": body}
            out.update(extra)
        return out

    async def probe(self) -> None:
        headers = {"Authorization": f"Bearer {self.settings.access_token.get_secret_value()}"}
        response = await self._send("GET", self.settings.probe_path, headers=headers)
        if response.status_code == 403:
            raise AuthError(f"{self.provider}: HTTP 403 on {self.settings.probe_path}: {error_message(response)}: "
                            f"the probe needs the openid and profile scopes; give the token those or set "
                            f"settings.probe_path to an endpoint it may read", status=403)
        if response.status_code == 401:
            raise AuthError(f"{self.provider}: HTTP 401: {error_message(response)}: renew settings.access_token",
                            status=401)
        raise_for_status(response, self.provider)
        if not isinstance(_json(response), dict):
            raise MalformedResponse(f"{self.provider}: {self.settings.probe_path} did not answer a JSON object",
                                    status=response.status_code)
