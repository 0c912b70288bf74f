"""An Ayrshare stand-in: `POST /api/post` and `GET /api/user`.

    POST /api/post   Bearer API key (and `Profile-Key` when `profile_key` is
                     set); `{"post", "platforms", "mediaUrls"}`; 200
                     `{"status": "success", "errors": [], "postIds": [{"status",
                     "id", "postUrl", "platform"}], "id", "refId", "post"}`.
                     A platform the profile has not linked fails with a
                     per-platform error; when every platform fails the
                     answer is 400 with `"status": "error"`, when some do it
                     is 200 with `"status": "error"` and both lists filled.
    GET /api/user    `{"activeSocialAccounts": [...], "displayNames": [...]}`
    every response   `x-ratelimit-max` / `x-ratelimit-count` (requests in the
                     current 5-minute window); a 429 names no reset time.
    errors           `{"action", "status": "error", "code", "message"}`.

The per-platform error codes are illustrative (Ayrshare documents the shape,
not a complete list). `posts` keeps every accepted post.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web

from actors.sandbox.base import StandIn

__all__ = ["AyrshareStandIn"]

PLATFORMS = ("bluesky", "facebook", "gmb", "instagram", "linkedin", "pinterest", "reddit", "telegram", "threads",
             "tiktok", "twitter", "youtube")


class AyrshareStandIn(StandIn):
    name = "ayrshare"

    def __init__(self, *, api_key: str = "ayr-key", linked: tuple[str, ...] = ("linkedin", "twitter"),
                 profile_key: str | None = None, window_limit: int = 300, seed: int = 0):
        super().__init__(api_key=api_key, seed=seed)
        self.linked = linked
        self.profile_key = profile_key
        self.window_limit = window_limit
        self.posts: list[dict[str, Any]] = []
        self._window: tuple[float, int] = (0.0, 0)
        self._next_id = 1_900_000_000_000_000_000

    def adapter_settings(self, **over: Any) -> dict[str, Any]:
        """Settings for the `ayrshare` adapter that talk to this stand-in."""
        settings: dict[str, Any] = {"base_url": self.base_url, "api_key": self.api_key}
        if self.profile_key:
            settings["profile_key"] = self.profile_key
        return {**settings, **over}

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/api/post", self._post), web.get("/api/user", self._user)]

    def reset(self) -> None:
        self.posts.clear()
        self._window = (0.0, 0)

    def authorized(self, request: web.Request) -> bool:
        if self.profile_key is not None and request.headers.get("Profile-Key") != self.profile_key:
            return False
        return super().authorized(request)

    # --- Ayrshare's shapes -----------------------------------------------------
    def _headers(self) -> dict[str, str]:
        now = time.time()
        start, used = self._window
        if now >= start + 300:
            start, used = now, 0
        self._window = (start, used + 1)
        return {"x-ratelimit-max": str(self.window_limit), "x-ratelimit-count": str(used + 1)}

    def error(self, status: int, message: str) -> web.Response:
        if status == 401:
            body = {"action": "authorization", "status": "error", "code": 102,
                    "message": "API Key not valid. Please check your API Key in the Ayrshare dashboard."}
        else:
            body = {"action": "request", "status": "error", "code": 500 if status >= 500 else 101, "message": message}
        return web.json_response(body, status=status, headers=self._headers())

    def rate_limited(self, retry_after_s: float | None) -> web.Response:
        headers = self._headers()
        headers["x-ratelimit-count"] = str(self.window_limit)
        return web.json_response({"action": "request", "status": "error", "code": 429,
                                  "message": "Too many requests. Please wait 5 minutes before retrying."},
                                 status=429, headers=headers)

    # --- handlers --------------------------------------------------------------
    async def _post(self, request: web.Request) -> web.Response:
        headers = self._headers()
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("post"), str) or not body["post"].strip():
            return web.json_response({"action": "post", "status": "error", "code": 104,
                                      "message": "Missing or invalid post text."}, status=400, headers=headers)
        platforms = body.get("platforms")
        if not isinstance(platforms, list) or not platforms or not all(p in PLATFORMS for p in platforms):
            return web.json_response({"action": "post", "status": "error", "code": 105,
                                      "message": f"Invalid platforms: {platforms!r}"}, status=400, headers=headers)
        ayrshare_id = uuid.uuid4().hex[:20]
        post_ids, errors = [], []
        for platform in platforms:
            if platform not in self.linked:
                errors.append({"action": "post", "status": "error", "code": 156, "platform": platform,
                               "message": f"{platform} is not linked. Please link {platform} in the Ayrshare "
                                          f"dashboard."})
                continue
            self._next_id += 1
            if platform == "linkedin":
                post_id = f"urn:li:share:{self._next_id}"
                url = f"https://www.linkedin.com/feed/update/{post_id}"
            else:
                post_id = str(self._next_id)
                url = f"https://twitter.com/example/status/{post_id}"
            post_ids.append({"status": "success", "id": post_id, "postUrl": url, "platform": platform})
        if post_ids:
            self.posts.append({"id": ayrshare_id, "post": body["post"], "platforms": platforms,
                               "mediaUrls": body.get("mediaUrls", []), "postIds": post_ids})
        answer = {"status": "error" if errors else "success", "errors": errors, "postIds": post_ids,
                  "id": ayrshare_id, "refId": "b68bdcabb379be2cf1186c1e59544", "post": body["post"]}
        return web.json_response(answer, status=200 if post_ids else 400, headers=headers)

    async def _user(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {"displayNames": [{"platform": p, "displayName": "Example", "id": "1"}
                                                 for p in self.linked],
                                "created": {"utc": "2026-01-01T00:00:00Z"}}
        if self.linked:
            body["activeSocialAccounts"] = list(self.linked)
        return web.json_response(body, headers=self._headers())
