"""A local stand-in for the Gmail REST API (v1) and Google's OAuth token endpoint.

Implements what the `gmail_api` adapter uses, as Google documents it:

    GET  /gmail/v1/users/{userId}/profile
    GET  /gmail/v1/users/{userId}/messages?q=&maxResults=&pageToken=&labelIds=&includeSpamTrash=
    GET  /gmail/v1/users/{userId}/messages/{id}?format=raw|minimal|metadata
    POST /gmail/v1/users/{userId}/messages/batchModify   {ids, addLabelIds, removeLabelIds}
    POST /token   (form: client_id, client_secret, refresh_token, grant_type=refresh_token)

Messages are stored raw (RFC 5322 bytes) with labels (INBOX, UNREAD, …) and
an internal date. `q` understands `is:unread`, `is:read`, `after:` and
`before:` (epoch seconds, or yyyy/mm/dd read as midnight PST as Gmail does),
`in:<label>`, `label:<label>` and `from:`; any other word is matched as text
in the message. Results are newest first. Errors have Google's shape:

    {"error": {"code": 429, "message": "...", "errors": [{"message": "...",
     "domain": "usageLimits", "reason": "rateLimitExceeded"}], "status": "RESOURCE_EXHAUSTED"}}

A throttled request gets a 429 whose message says "Retry after <time>"
(Gmail's per-user limit answers so); Google documents no Retry-After header,
so none is sent. The token endpoint answers RFC 6749 bodies
(`{"error": "invalid_grant", "error_description": …}`). The stand-in's fault
knobs work as in every stand-in; `reject_auth` makes every bearer token and
every refresh fail.
"""

from __future__ import annotations

import base64
import email
import email.policy
import email.utils
import itertools
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from actors.sandbox.base import StandIn

__all__ = ["GmailApiStandIn", "StoredMessage"]

_STATUS = {400: ("badRequest", "INVALID_ARGUMENT", "global"), 401: ("authError", "UNAUTHENTICATED", "global"),
           403: ("forbidden", "PERMISSION_DENIED", "global"), 404: ("notFound", "NOT_FOUND", "global"),
           429: ("rateLimitExceeded", "RESOURCE_EXHAUSTED", "usageLimits"),
           500: ("backendError", "INTERNAL", "global"), 503: ("backendError", "UNAVAILABLE", "global")}
_PST = timezone(timedelta(hours=-8))


@dataclass
class StoredMessage:
    id: str
    thread_id: str
    raw: bytes
    internal_date_ms: int
    labels: set[str] = field(default_factory=set)

    def header(self, name: str) -> str:
        msg = email.message_from_bytes(self.raw, policy=email.policy.compat32)
        return str(msg.get(name) or "")


class GmailApiStandIn(StandIn):
    name = "gmail_api"

    def __init__(self, *, access_token: str = "test-gmail-token", client_id: str = "test-client-id",
                 client_secret: str = "test-client-secret", refresh_token: str = "test-refresh-token",
                 email_address: str = "ann@example.com", seed: int = 0):
        super().__init__(api_key=access_token, seed=seed)
        self.client_id = client_id
        self.client_secret = client_secret
        self.refresh_token = refresh_token
        self.email_address = email_address
        self.valid_tokens: set[str] = {access_token}
        self.messages: dict[str, StoredMessage] = {}
        self.refreshes = 0
        self._ids = itertools.count(0x18c0000000000000)

    # --- data -------------------------------------------------------------------
    def add_message(self, raw: bytes, *, unread: bool = True, labels: tuple[str, ...] = ("INBOX",),
                    internal_date: datetime | float | None = None) -> str:
        """Store a message as delivered; returns its Gmail id."""
        ident = format(next(self._ids), "x")
        if internal_date is None:
            stamp = time.time()
        elif isinstance(internal_date, datetime):
            stamp = internal_date.timestamp()
        else:
            stamp = float(internal_date)
        message = StoredMessage(ident, ident, raw, int(stamp * 1000), set(labels) | ({"UNREAD"} if unread else set()))
        parent = message.header("In-Reply-To").strip()
        for other in self.messages.values():
            if parent and other.header("Message-ID").strip() == parent:
                message.thread_id = other.thread_id
                break
        self.messages[ident] = message
        return ident

    def unread_ids(self) -> set[str]:
        return {m.id for m in self.messages.values() if "UNREAD" in m.labels}

    def revoke_tokens(self) -> None:
        """Every access token issued so far stops working (they expired)."""
        self.valid_tokens.clear()

    def reset(self) -> None:
        self.messages.clear()
        self.valid_tokens = {self.api_key}
        self.refreshes = 0

    # --- format ------------------------------------------------------------------
    def authorized(self, request: web.Request) -> bool:
        if request.path == "/token":
            return True  # the token endpoint authenticates the client in its body
        header = request.headers.get("Authorization", "")
        return header.startswith("Bearer ") and header[7:] in self.valid_tokens

    def error(self, status: int, message: str, reason: str | None = None) -> web.Response:
        default_reason, grpc, domain = _STATUS.get(status, ("backendError", "UNKNOWN", "global"))
        reason = reason or default_reason
        body = {"error": {"code": status, "message": message,
                          "errors": [{"message": message, "domain": domain, "reason": reason}], "status": grpc}}
        headers = {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/", error="invalid_token"'} \
            if status == 401 else None
        if status == 401 and message == "invalid credentials":
            message = "Request had invalid authentication credentials. Expected OAuth 2 access token, login " \
                      "cookie or other valid authentication credential."
            body["error"]["message"] = message
            body["error"]["errors"][0]["message"] = "Invalid Credentials"
        return web.json_response(body, status=status, headers=headers)

    def rate_limited(self, retry_after_s: float | None) -> web.Response:
        message = "User-rate limit exceeded."
        if retry_after_s is not None:
            at = datetime.now(timezone.utc) + timedelta(seconds=retry_after_s)
            message += "  Retry after " + at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return self.error(429, message, "rateLimitExceeded")

    async def _faulted(self, request: web.Request) -> web.StreamResponse | None:
        if request.path == "/token" and self.faults.reject_auth:
            return web.json_response(
                {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}, status=400)
        return await super()._faulted(request)

    # --- routes ---------------------------------------------------------------------
    def routes(self) -> list[web.RouteDef]:
        base = "/gmail/v1/users/{user_id}"
        return [
            web.get(base + "/profile", self._profile),
            web.get(base + "/messages", self._list),
            web.post(base + "/messages/batchModify", self._batch_modify),
            web.get(base + "/messages/{id}", self._get),
            web.post("/token", self._token),
        ]

    def _check_user(self, request: web.Request) -> web.Response | None:
        user = request.match_info["user_id"]
        if user not in ("me", self.email_address):
            return self.error(403, "Delegation denied for " + self.email_address, "forbidden")
        return None

    async def _profile(self, request: web.Request) -> web.Response:
        if (denied := self._check_user(request)) is not None:
            return denied
        return web.json_response({"emailAddress": self.email_address, "messagesTotal": len(self.messages),
                                  "threadsTotal": len({m.thread_id for m in self.messages.values()}),
                                  "historyId": str(1000 + len(self.messages))})

    async def _list(self, request: web.Request) -> web.Response:
        if (denied := self._check_user(request)) is not None:
            return denied
        try:
            max_results = int(request.query.get("maxResults", "100"))
            offset = int(request.query.get("pageToken", "0") or 0)
        except ValueError:
            return self.error(400, "Invalid value for maxResults or pageToken")
        if not 1 <= max_results <= 500:
            return self.error(400, f"Invalid maxResults: {max_results}")
        try:
            matches = self._search(request.query.get("q", ""))
        except ValueError as exc:
            return self.error(400, f"Invalid query: {exc}")
        label_ids = request.query.getall("labelIds", [])
        spam_trash = request.query.get("includeSpamTrash", "false").lower() == "true"
        matches = [m for m in matches if all(label in m.labels for label in label_ids)
                   and (spam_trash or not m.labels & {"SPAM", "TRASH"})]
        matches.sort(key=lambda m: (m.internal_date_ms, m.id), reverse=True)
        page = matches[offset:offset + max_results]
        body: dict[str, Any] = {"resultSizeEstimate": len(matches)}
        if page:  # Gmail leaves `messages` out when nothing matches
            body["messages"] = [{"id": m.id, "threadId": m.thread_id} for m in page]
        if offset + max_results < len(matches):
            body["nextPageToken"] = str(offset + max_results)
        return web.json_response(body)

    async def _get(self, request: web.Request) -> web.Response:
        if (denied := self._check_user(request)) is not None:
            return denied
        message = self.messages.get(request.match_info["id"])
        if message is None:
            return self.error(404, "Requested entity was not found.", "notFound")
        fmt = request.query.get("format", "full").lower()
        body: dict[str, Any] = {"id": message.id, "threadId": message.thread_id, "labelIds": sorted(message.labels),
                                "sizeEstimate": len(message.raw), "historyId": str(1000 + len(self.messages)),
                                "internalDate": str(message.internal_date_ms)}
        if fmt == "raw":
            body["snippet"] = self._snippet(message)
            body["raw"] = base64.urlsafe_b64encode(message.raw).decode()
        elif fmt == "metadata":
            msg = email.message_from_bytes(message.raw, policy=email.policy.compat32)
            body["snippet"] = self._snippet(message)
            body["payload"] = {"mimeType": msg.get_content_type(),
                               "headers": [{"name": k, "value": str(v)} for k, v in msg.items()]}
        elif fmt != "minimal":
            return self.error(400, f"format {fmt!r} is not implemented by this stand-in (use raw, metadata or minimal)")
        return web.json_response(body)

    async def _batch_modify(self, request: web.Request) -> web.Response:
        if (denied := self._check_user(request)) is not None:
            return denied
        try:
            data = await request.json()
            ids = list(data.get("ids") or [])
            add = set(data.get("addLabelIds") or [])
            remove = set(data.get("removeLabelIds") or [])
        except (ValueError, AttributeError, TypeError):
            return self.error(400, "Invalid JSON payload received.")
        if len(ids) > 1000:
            return self.error(400, "Too many ids: at most 1000")
        for ident in ids:
            message = self.messages.get(ident)
            if message is not None:
                message.labels = (message.labels | add) - remove
        return web.Response(status=204)

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "refresh_token":
            return web.json_response({"error": "unsupported_grant_type",
                                      "error_description": f"Invalid grant_type: {form.get('grant_type')}"}, status=400)
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return web.json_response({"error": "invalid_client", "error_description": "Unauthorized"}, status=401)
        if form.get("refresh_token") != self.refresh_token:
            return web.json_response({"error": "invalid_grant", "error_description": "Bad Request"}, status=400)
        self.refreshes += 1
        token = f"ya29.sandbox-{self.refreshes}-{self.random.randrange(1 << 32):08x}"
        self.valid_tokens.add(token)
        return web.json_response({"access_token": token, "expires_in": 3599, "token_type": "Bearer",
                                  "scope": "https://www.googleapis.com/auth/gmail.readonly"})

    # --- search -------------------------------------------------------------------
    @staticmethod
    def _snippet(message: StoredMessage) -> str:
        msg = email.message_from_bytes(message.raw, policy=email.policy.default)
        try:
            part = msg.get_body(preferencelist=("plain", "html"))
            text = part.get_content() if part is not None else ""
        except Exception:  # noqa: BLE001
            text = ""
        return " ".join(str(text).split())[:200]

    @staticmethod
    def _when(value: str) -> float:
        if value.isdigit():
            return float(value)
        for fmt in ("%Y/%m/%d", "%Y-%m-%d"):
            try:
                return datetime.strptime(value, fmt).replace(tzinfo=_PST).timestamp()
            except ValueError:
                continue
        raise ValueError(f"bad date {value!r}")

    def _search(self, query: str) -> list[StoredMessage]:
        found = list(self.messages.values())
        for term in query.split():
            key, _, value = term.partition(":")
            key = key.lower()
            if key == "is" and value.lower() in ("unread", "read"):
                want = value.lower() == "unread"
                found = [m for m in found if ("UNREAD" in m.labels) == want]
            elif key in ("after", "before") and value:
                bound = self._when(value) * 1000
                if key == "after":
                    found = [m for m in found if m.internal_date_ms > bound]
                else:
                    found = [m for m in found if m.internal_date_ms < bound]
            elif key in ("in", "label") and value:
                label = value.upper() if value.lower() in ("inbox", "sent", "spam", "trash", "draft", "unread") \
                    else value
                found = [m for m in found if label in m.labels or label.replace("-", " ") in m.labels]
            elif key == "from" and value:
                found = [m for m in found if value.lower() in m.header("From").lower()]
            else:
                found = [m for m in found if term.lower().encode() in m.raw.lower()]
        return found
