"""A LinkedIn Posts API stand-in: what `POST /rest/posts` and `GET /v2/userinfo` answer.

    POST /rest/posts    Bearer token; `LinkedIn-Version: YYYYMM` (400
                        VERSION_MISSING without it, 426 NONEXISTENT_VERSION
                        for one outside `versions`); `X-Restli-Protocol-Version:
                        2.0.0`; author, commentary, visibility, distribution and
                        lifecycleState required (422 with inputErrors); posting
                        as another author than the token's member or
                        organization: 403 ACCESS_DENIED; the same commentary by
                        the same author again: 422 DUPLICATE_POST naming the
                        first post. Success: 201, empty body, the URN in
                        `x-restli-id`.
    GET /v2/userinfo    the token's member (OIDC claims: sub, name, ...).
    429                 `{"status": 429, "serviceErrorCode": 101, ...}` and no
                        rate-limit or Retry-After header, as LinkedIn does.

`posts` keeps every published post (URN -> body).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from actors.sandbox.base import StandIn

__all__ = ["LinkedInStandIn"]

REQUIRED = ("author", "commentary", "visibility", "distribution", "lifecycleState")


class LinkedInStandIn(StandIn):
    name = "linkedin"

    def __init__(self, *, api_key: str = "li-token", member_id: str = "abc123", organization_ids: tuple[str, ...] = (),
                 versions: tuple[str, ...] = ("202601", "202602", "202603", "202604", "202605", "202606"),
                 seed: int = 0):
        super().__init__(api_key=api_key, seed=seed)
        self.member_id = member_id
        self.organization_ids = organization_ids
        self.versions = versions
        self.posts: dict[str, dict[str, Any]] = {}
        self._next_id = 7_300_000_000_000_000_000

    def adapter_settings(self, **over: Any) -> dict[str, Any]:
        """Settings for the `linkedin` adapter that talk to this stand-in."""
        return {"base_url": self.base_url, "access_token": self.api_key,
                "author": f"urn:li:person:{self.member_id}", **over}

    def routes(self) -> list[web.RouteDef]:
        return [web.post("/rest/posts", self._create), web.get("/v2/userinfo", self._userinfo)]

    def reset(self) -> None:
        self.posts.clear()

    # --- LinkedIn's error shapes ---------------------------------------------
    def error(self, status: int, message: str) -> web.Response:
        if status == 401:
            return web.json_response({"status": 401, "serviceErrorCode": 65600, "code": "INVALID_ACCESS_TOKEN",
                                      "message": "Invalid access token"}, status=401)
        return web.json_response({"status": status, "message": message}, status=status)

    def rate_limited(self, retry_after_s: float | None) -> web.Response:
        # LinkedIn documents no Retry-After and no rate-limit headers.
        return web.json_response({"status": 429, "serviceErrorCode": 101, "code": "TOO_MANY_REQUESTS",
                                  "message": "Resource level throttle limit for calls to this resource is reached."},
                                 status=429)

    @staticmethod
    def _fail(status: int, code: str, message: str, **extra: Any) -> web.Response:
        return web.json_response({"status": status, "code": code, "message": message, **extra}, status=status)

    # --- handlers ------------------------------------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        version = request.headers.get("LinkedIn-Version")
        if not version:
            return self._fail(400, "VERSION_MISSING", "A version must be present. Please specify a version by adding "
                                                      "the LinkedIn-Version header.")
        if version not in self.versions:
            return self._fail(426, "NONEXISTENT_VERSION", f"Requested version {version} is not active")
        if request.headers.get("X-Restli-Protocol-Version") != "2.0.0":
            return self._fail(400, "ILLEGAL_ARGUMENT", "X-Restli-Protocol-Version 2.0.0 is required for this resource")
        try:
            body = await request.json()
        except ValueError:
            return self._fail(400, "ILLEGAL_ARGUMENT", "Unable to parse the request body as JSON")
        if not isinstance(body, dict):
            return self._fail(400, "ILLEGAL_ARGUMENT", "The request body must be a JSON object")
        missing = [f for f in REQUIRED if f not in body]
        if missing:
            return web.json_response({
                "errorDetailType": "com.linkedin.common.error.BadRequest",
                "message": f"Field Value validation failed in REQUEST_BODY: Data Processing Exception while processing "
                           f"fields [{', '.join('/' + f for f in missing)}]",
                "errorDetails": {"inputErrors": [
                    {"description": "This field is required", "input": {"inputPath": {"fieldPath": f}},
                     "code": "FIELD_VALUE_REQUIRED"} for f in missing]},
                "status": 422}, status=422)
        allowed = {f"urn:li:person:{self.member_id}", *(f"urn:li:organization:{o}" for o in self.organization_ids)}
        if body["author"] not in allowed:
            return web.json_response({"status": 403, "serviceErrorCode": 100, "code": "ACCESS_DENIED",
                                      "message": "Not enough permissions to access: partnerApiPostsExternal.CREATE."
                                                 "20260101"}, status=403)
        for urn, post in self.posts.items():
            if post["author"] == body["author"] and post["commentary"] == body["commentary"]:
                return web.json_response({
                    "errorDetailType": "com.linkedin.common.error.BadRequest",
                    "message": f"Resource level validation failed. Content is a duplicate of {urn}",
                    "errorDetails": {"inputErrors": [{"description": "Duplicate post is detected",
                                                      "input": {}, "code": "DUPLICATE_POST"}]},
                    "status": 422}, status=422)
        self._next_id += 1
        urn = f"urn:li:share:{self._next_id}"
        self.posts[urn] = body
        return web.Response(status=201, headers={"x-restli-id": urn, "x-linkedin-id": urn})

    async def _userinfo(self, request: web.Request) -> web.Response:
        return web.json_response({"sub": self.member_id, "email_verified": True, "name": "Ann Example",
                                  "given_name": "Ann", "family_name": "Example", "locale": {"country": "US",
                                                                                             "language": "en"}})
