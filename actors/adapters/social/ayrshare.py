"""Ayrshare: one API that posts to the social networks linked in an Ayrshare profile.

It serves both of our networks: `linkedin`, and `x` (Ayrshare's `twitter`).

Implemented (ayrshare.com/docs/apis/post/post, /docs/errors):
- `POST /api/post` with `Authorization: Bearer <API key>` (and `Profile-Key`
  for a user profile on the Business plan), body `{"post", "platforms",
  "mediaUrls"}`. `link` is appended to the text (the post endpoint has no
  separate link field); `media_urls` are passed as `mediaUrls`, which
  Ayrshare fetches itself.
- 200 answers `{"status": "success", "errors": [], "postIds": [{"status",
  "id", "postUrl", "platform"}], "id": <Ayrshare post id>, ...}`. With one
  network the value's `post_id`/`url` are that network's post; with several
  (`default_networks`), `post_id` is Ayrshare's own id and `posts` lists
  each network's.
- Errors: HTTP 400/401/403/404/429/5xx, or `"status": "error"` in the body,
  with `errors: [{action, status, code, message, platform}]`. A post that
  reached some networks and not others is answered as a success with
  `partial: true` and the errors: sending it again would post twice where it
  succeeded.
- 429: each profile may make a limited number of requests per 5-minute
  window (x-ratelimit-max / x-ratelimit-count headers, no reset time); the
  docs say to wait out the 5 minutes, so without a Retry-After the wait is
  `rate_limit_wait_s` (300).
- 402 (payment required: the plan does not allow the call) is treated as
  an auth-kind failure: the operator must act on the account.

Routing: a payload's `network` must be one of `networks` (the networks
linked in the profile); else NotSupported. No network = `default_networks`.

Idempotency: Ayrshare has no idempotency key. Its post verification refuses
duplicate and similar posts, and the networks refuse duplicates too, but as
errors that do not name the first post; `publish_post` is therefore not in
`resends_deduplicated`.

Probe: `GET /api/user`, free and read-only; it also checks that every
network in `networks` is linked (activeSocialAccounts).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from actors.adapters.http import HttpAdapter, TlsSettings, error_message, json_body, raise_for_status, retry_after_s
from actors.adapters.previews import public_headers
from actors.adapters.social.networks import serve_network
from actors.errors import AuthError, MalformedResponse, ProviderRejected, RateLimited
from actors.messages import CallContext
from actors.payloads import Payload, PublishPost

__all__ = ["AyrshareAdapter", "AyrshareSettings", "PLATFORM", "read_post_reply"]

Network = Literal["linkedin", "x"]
PLATFORM: dict[str, str] = {"linkedin": "linkedin", "x": "twitter"}
NETWORK_OF = {platform: network for network, platform in PLATFORM.items()}


class AyrshareSettings(TlsSettings):
    base_url: str = Field("https://api.ayrshare.com", description="API root")
    api_key: SecretStr = Field(description="API key of the primary profile")
    profile_key: SecretStr | None = Field(None, description="Profile-Key of a user profile (Business plan)")
    networks: list[Network] = Field(["linkedin", "x"], min_length=1,
                                    description="networks linked in the Ayrshare profile")
    default_networks: list[Network] = Field(["linkedin"], min_length=1,
                                            description="where a post that names no network goes")
    rate_limit_wait_s: float = Field(300.0, ge=0, description="wait after a 429 that names no time")

    @model_validator(mode="after")
    def _defaults_are_linked(self) -> "AyrshareSettings":
        missing = [n for n in self.default_networks if n not in self.networks]
        if missing:
            raise ValueError(f"default_networks {missing} are not in networks {self.networks}")
        return self


def _json(response: Any) -> Any:
    try:
        return response.json()
    except Exception:
        return None


def _errors(body: Any) -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get("errors"), list):
        return []
    out = []
    for e in body["errors"]:
        if isinstance(e, dict):
            where = f"{e.get('platform')}: " if e.get("platform") else ""
            code = f" (code {e.get('code')})" if e.get("code") is not None else ""
            out.append(f"{where}{e.get('message', e)}{code}")
    return out


def _post_url(network: str, post_id: str, given: Any) -> str | None:
    if isinstance(given, str) and given:
        return given
    if network == "x":
        return f"https://x.com/i/web/status/{post_id}"
    if network == "linkedin" and post_id.startswith("urn:li:"):
        return f"https://www.linkedin.com/feed/update/{post_id}/"
    return None


def read_post_reply(response: Any, provider: str, rate_limit_wait_s: float) -> dict[str, Any]:
    """The one place a reply to POST /api/post becomes a value or an error kind."""
    status = response.status_code
    if status in (401, 403, 402):
        why = ("the plan does not allow this call" if status == 402
               else "check settings.api_key (and settings.profile_key)")
        raise AuthError(f"{provider}: HTTP {status}: {error_message(response)}: {why}", status=status)
    if status == 429:
        wait = retry_after_s(response.headers)
        raise RateLimited(f"{provider}: HTTP 429: {error_message(response)}",
                          retry_after_s=rate_limit_wait_s if wait is None else wait, status=status)
    if not 200 <= status < 300:
        if 400 <= status < 500:
            errors = _errors(_json(response))
            if errors:  # name each network and Ayrshare's code
                raise ProviderRejected(f"{provider}: HTTP {status}: {'; '.join(errors)}", status=status)
        raise_for_status(response, provider)
        raise MalformedResponse(f"{provider}: unexpected HTTP {status}", status=status)

    body = json_body(response, provider)
    if not isinstance(body, dict):
        raise MalformedResponse(f"{provider}: expected a JSON object, got {type(body).__name__}", status=status)
    post_ids = body.get("postIds", [])
    if not isinstance(post_ids, list):
        raise MalformedResponse(f"{provider}: `postIds` is {type(post_ids).__name__}, expected list", status=status)
    posts: dict[str, dict[str, Any]] = {}
    for entry in post_ids:
        if not isinstance(entry, dict) or entry.get("status") != "success":
            continue
        platform, post_id = entry.get("platform"), entry.get("id")
        if not isinstance(platform, str) or not isinstance(post_id, (str, int)) or isinstance(post_id, bool):
            raise MalformedResponse(f"{provider}: a postIds entry lacks `platform` or `id`: {str(entry)[:120]!r}",
                                    status=status)
        network = NETWORK_OF.get(platform, platform)
        posts[network] = {"post_id": str(post_id), "url": _post_url(network, str(post_id), entry.get("postUrl"))}
    errors = _errors(body)
    if not posts:
        detail = "; ".join(errors) or error_message(response)
        raise ProviderRejected(f"{provider}: {detail or 'no network accepted the post'}", status=status)

    ayrshare_id = body.get("id")
    value: dict[str, Any] = {"posts": posts, "ayrshare_id": ayrshare_id if isinstance(ayrshare_id, str) else None}
    if len(posts) == 1:
        (only,) = posts.values()
        value.update(only)
    else:
        if not isinstance(ayrshare_id, str):
            raise MalformedResponse(f"{provider}: response has no Ayrshare `id` for a multi-network post",
                                    status=status)
        value.update(post_id=ayrshare_id, url=next(iter(posts.values()))["url"])
    if errors or body.get("status") == "error":
        value.update(partial=True, errors=errors)
    return value


class AyrshareAdapter(HttpAdapter):
    name = "ayrshare"
    Settings = AyrshareSettings
    capabilities = frozenset({"social_posting"})
    auth_settings = ("api_key", "profile_key")
    has_probe = True
    resends_deduplicated = frozenset()

    settings: AyrshareSettings


    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.settings.api_key.get_secret_value()}",
                   "Content-Type": "application/json"}
        if self.settings.profile_key is not None:
            headers["Profile-Key"] = self.settings.profile_key.get_secret_value()
        return headers

    def _body(self, payload: PublishPost) -> dict[str, Any]:
        networks = [payload.network] if payload.network else list(self.settings.default_networks)
        for network in networks:
            serve_network(self.provider, network, set(self.settings.networks))
        text = f"{payload.text}\n{payload.link}" if payload.link else payload.text
        body: dict[str, Any] = {"post": text, "platforms": [PLATFORM[n] for n in networks]}
        if payload.media_urls:
            body["mediaUrls"] = list(payload.media_urls)
        return body

    async def publish_post(self, payload: PublishPost, ctx: CallContext) -> dict[str, Any]:
        body = self._body(payload)
        response = await self._send("POST", "/api/post", headers=self._headers(), json=body)
        return read_post_reply(response, self.provider, self.settings.rate_limit_wait_s)

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        out = await super().dry_run(method, payload, ctx)
        if isinstance(payload, PublishPost):
            out["would_send"] = {"method": "POST", "url": f"{self.settings.base_url}/api/post",
                                 "headers": public_headers(self._headers()), "json": self._body(payload)}
        return out

    async def probe(self) -> None:
        headers = {k: v for k, v in self._headers().items() if k != "Content-Type"}
        response = await self._send("GET", "/api/user", headers=headers)
        if response.status_code in (401, 403, 402):
            raise AuthError(f"{self.provider}: HTTP {response.status_code} on /api/user: {error_message(response)}: "
                            f"check settings.api_key (and settings.profile_key)", status=response.status_code)
        if response.status_code == 429:
            wait = retry_after_s(response.headers)
            raise RateLimited(f"{self.provider}: HTTP 429 on /api/user",
                              retry_after_s=self.settings.rate_limit_wait_s if wait is None else wait, status=429)
        raise_for_status(response, self.provider)
        body = json_body(response, self.provider)
        if not isinstance(body, dict):
            raise MalformedResponse(f"{self.provider}: /api/user did not answer a JSON object")
        active = body.get("activeSocialAccounts", [])  # absent when nothing is linked
        if not isinstance(active, list):
            raise MalformedResponse(f"{self.provider}: `activeSocialAccounts` is {type(active).__name__}, expected list")
        unlinked = [PLATFORM[n] for n in self.settings.networks if PLATFORM[n] not in active]
        if unlinked:
            raise AuthError(f"{self.provider}: the Ayrshare profile has no linked {', '.join(unlinked)} account: "
                            f"link it in the Ayrshare dashboard, or remove it from settings.networks")
