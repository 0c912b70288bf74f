"""Reply fetching over IMAP4rev1 (RFC 3501) with aioimaplib, implicit TLS on 993.

One call, one connection: connect (TLS from the first byte), LOGIN or
AUTHENTICATE XOAUTH2, SELECT the mailbox, UID SEARCH, UID FETCH
`(BODY.PEEK[] INTERNALDATE)` in batches, LOGOUT. BODY.PEEK[] leaves \\Seen
alone (RFC 3501 6.4.5), so a fetch only reads and may be repeated at will.
With `mark_seen: true` the returned replies are then flagged \\Seen
(`UID STORE +FLAGS.SILENT (\\Seen)`): the gateway's way of saying "handled",
so that the next `unseen` search skips them.

Search: `UNSEEN` (setting `search: unseen`, the default) or `ALL`, plus
`SINCE <date>` when the payload gives `since`. SINCE compares dates only,
"disregarding time and timezone" (RFC 3501 6.4.4), so we ask from the day
before and keep the messages whose INTERNALDATE is at or after `since`.
Candidates are taken newest UID first, `limit` at most; the value lists them
newest first by arrival time.

Connections: IMAP servers cap simultaneous connections per account (Gmail
about 15, Dovecot's default 10 per user and IP), so `max_connections` bounds
how many this adapter opens at once; further calls wait for a free one.

Three layers, one module each: this adapter (settings, the fetch, the
probe, the dry run); the session over aioimaplib, with its exception table
(imap_session.py); RFC 3501 itself, with what a NO, BAD or BYE means
(imap_protocol.py):

    LOGIN/AUTHENTICATE NO        -> AuthError ([LIMIT]/"too many" -> RateLimited,
                                    [UNAVAILABLE] -> TransientError)
    SELECT NO [NONEXISTENT]      -> ProviderRejected (the mailbox does not exist)
    BYE / "too many connections" -> RateLimited; other BYE -> TransientError
    connection refused or reset  -> TransientError
    no answer in time            -> AttemptTimeout
    an untagged reply we cannot read -> MalformedResponse
    our own AttributeError/TypeError/KeyError -> raised as is (the actor's `crashed`)

The transport is injectable: `transport` is an ImapClientFactory
`(host, port, timeout, ssl_context) -> client` returning an object with
aioimaplib's IMAP4 API; unit tests pass a fake.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator

from actors.adapters.base import Adapter, AdapterSettings
from actors.adapters.replies._mail_parsing import iso_utc, parse_reply, parse_time
from actors.adapters.replies.imap_protocol import encode_mailbox, imap_date, parse_fetch, parse_internaldate, parse_search
from actors.adapters.replies.imap_session import ImapClientFactory, Session
from actors.errors import ProviderError
from actors.messages import CallContext
from actors.payloads import FetchReplies, Payload

# The protocol helpers are re-exported: they are this adapter's to test.
__all__ = ["ImapAdapter", "ImapSettings", "encode_mailbox", "imap_date", "parse_fetch", "parse_internaldate",
           "parse_search"]


class ImapSettings(AdapterSettings):
    host: str = "imap.gmail.com"
    port: int = Field(993, ge=1, le=65535)
    username: str
    password: SecretStr | None = None
    oauth_token: SecretStr | None = None
    auth_method: Literal["login", "xoauth2"] = "login"
    mailbox: str = Field("INBOX", description="read when the payload names the default INBOX")
    verify_tls: bool = True
    ca_file: str | None = None
    timeout_s: float = Field(15.0, gt=0, description="per IMAP command")
    search: Literal["unseen", "all"] = "unseen"
    mark_seen: bool = False
    max_connections: int = Field(2, ge=1, le=50, description="simultaneous IMAP connections this provider opens")
    fetch_batch: int = Field(50, ge=1, le=500, description="messages per UID FETCH")

    @model_validator(mode="after")
    def _credentials_for_method(self) -> "ImapSettings":
        if self.auth_method == "login" and self.password is None:
            raise ValueError("auth_method `login` needs `password`")
        if self.auth_method == "xoauth2" and self.oauth_token is None:
            raise ValueError("auth_method `xoauth2` needs `oauth_token`")
        return self


class ImapAdapter(Adapter):
    name = "imap"
    Settings = ImapSettings
    capabilities = frozenset({"reply_fetching"})
    auth_settings = ("username", "password", "oauth_token", "auth_method")
    has_probe = True
    # A fetch only reads (BODY.PEEK[]): asking again cannot act twice. With
    # mark_seen the flags are set again, which changes nothing.
    resends_deduplicated = frozenset({"fetch_replies"})

    transport: ImapClientFactory | None

    def __init__(self, settings: ImapSettings, **kw: Any):
        super().__init__(settings, **kw)
        self._connections: asyncio.Semaphore | None = None

    def _mailbox(self, payload: FetchReplies) -> str:
        # The payload's mailbox wins unless it is the contract's default.
        return self.settings.mailbox if payload.mailbox == "INBOX" else payload.mailbox

    def _criteria(self, since: datetime | None) -> list[str]:
        criteria = ["UNSEEN"] if self.settings.search == "unseen" else []
        if since is not None:
            # SINCE ignores the time and the timezone: start a day early, filter exactly afterwards.
            criteria += ["SINCE", imap_date((since - timedelta(days=1)).astimezone(timezone.utc))]
        return criteria or ["ALL"]

    def _limit(self) -> asyncio.Semaphore:
        if self._connections is None:
            self._connections = asyncio.Semaphore(self.settings.max_connections)
        return self._connections

    async def fetch_replies(self, payload: FetchReplies, ctx: CallContext) -> dict[str, Any]:
        deadline = time.monotonic() + ctx.timeout_s
        since = parse_time(payload.since) if payload.since else None
        mailbox = self._mailbox(payload)
        async with self._limit():
            session = Session(self.settings, self.provider, self.transport, deadline)
            try:
                await session.open()
                await session.login()
                await session.select(mailbox)
                uids = sorted(set(await session.search(self._criteria(since))), reverse=True)
                replies = await self._collect(session, uids, since, payload.limit)
                marked = await self._mark(session, replies) if self.settings.mark_seen and replies else False
            finally:
                await session.close()
        return {"replies": replies, "mailbox": mailbox, "order": "newest_first", "marked_seen": marked}

    async def _collect(self, session: Session, uids: list[int], since: datetime | None,
                       limit: int) -> list[dict[str, Any]]:
        replies: list[dict[str, Any]] = []
        batch = self.settings.fetch_batch
        for start in range(0, len(uids), batch):
            for uid, arrived, raw in await session.fetch(uids[start:start + batch]):
                reply = parse_reply(raw, received_at=arrived, fallback_id=f"imap-uid-{uid}" if uid else None)
                moment = arrived or (parse_time(reply["received_at"]) if reply["received_at"] else None)
                if since is not None and (moment is None or moment < since):
                    continue
                reply["imap_uid"] = uid
                replies.append(reply)
            if len(replies) >= limit:
                break
        replies.sort(key=lambda r: (r["received_at"] or "", r["imap_uid"] or 0), reverse=True)
        return replies[:limit]

    async def _mark(self, session: Session, replies: list[dict[str, Any]]) -> bool:
        """Flag the returned replies \\Seen. The replies are already read: a
        failure here is reported in the value, never turned into a failed
        fetch that would lose them."""
        uids = [r["imap_uid"] for r in replies if r.get("imap_uid")]
        if not uids:
            return False
        try:
            await session.mark_seen(uids)
        except ProviderError:
            return False
        return True

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        s = self.settings
        assert isinstance(payload, FetchReplies)
        since = parse_time(payload.since) if payload.since else None
        auth = f"AUTHENTICATE XOAUTH2 <{s.username}, token removed>" if s.auth_method == "xoauth2" \
            else f"LOGIN {s.username} <password removed>"
        commands = [auth, f"SELECT {encode_mailbox(self._mailbox(payload))}",
                    "UID SEARCH " + " ".join(self._criteria(since)),
                    "UID FETCH <found uids> (BODY.PEEK[] INTERNALDATE)"]
        if s.mark_seen:
            commands.append("UID STORE <returned uids> +FLAGS.SILENT (\\Seen)")
        commands.append("LOGOUT")
        return self.would_send(method, {"host": s.host, "port": s.port, "tls": "implicit", "commands": commands,
                                        "since": iso_utc(since) if since else None, "limit": payload.limit})

    async def probe(self) -> None:
        """CONNECT, LOGIN, NOOP, LOGOUT: proves reachability and credentials, reads no mail."""
        async with self._limit():
            session = Session(self.settings, self.provider, self.transport, time.monotonic() + self.settings.timeout_s * 3)
            try:
                await session.open()
                await session.login()
                await session.noop()
            finally:
                await session.close()
