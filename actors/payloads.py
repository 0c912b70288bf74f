"""The capabilities, their methods and each method's payload.

A payload is validated into its Struct before any provider is called, so a
bad request costs no provider call and says which field is wrong. Unknown
fields are refused: a misspelt `txt` would otherwise send an empty email.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

import msgspec

from actors.errors import PayloadError  # noqa: F401 - defined with the one hierarchy, raised here

# An RFC 5322 dot-atom address (letters beyond ASCII allowed, as SMTPUTF8
# does): no quoted local parts, no comments, nothing a header parser could
# read as two addresses or a group.
_ATOM = r"[\w!#$%&'*+/=?^`{|}~-]+"
_ADDRESS = re.compile(rf"^{_ATOM}(?:\.{_ATOM})*@(?:\w(?:[\w-]{{0,61}}\w)?\.)+\w[\w-]{{0,62}}$")
# A header field name: printable ASCII but the colon (RFC 5322 ftext), short
# enough to fold.
_FIELD_NAME = re.compile(r"^[!-9;-~]{1,76}$")
# Every character str.splitlines() breaks on: a header or subject holding any
# of them would start a new header line.
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def _shown(value: str, limit: int = 80) -> str:
    """A bad value quoted in an error, cut short: errors are logged and audited."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


def _check_address(field: str, value: str) -> None:
    if len(value) > 254 or not _ADDRESS.match(value):
        raise ValueError(f"`{field}` is not an email address: {_shown(value)}")


def _check_one_line(field: str, value: str) -> None:
    if any(c in _LINE_BREAKS for c in value):
        raise ValueError(f"`{field}` holds a line break")


class Payload(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every method payload."""


class SendEmail(Payload):
    to: list[str]
    subject: str
    text: str | None = None
    html: str | None = None
    from_addr: str | None = None
    reply_to: str | None = None
    headers: dict[str, str] = {}

    def __post_init__(self) -> None:
        if not self.to:
            raise ValueError("`to` needs at least one address")
        if len(self.to) > 1000:
            raise ValueError(f"`to` has {len(self.to)} addresses; at most 1000 per message")
        for i, address in enumerate(self.to):
            _check_address(f"to[{i}]", address)
        if self.text is None and self.html is None:
            raise ValueError("give `text` and/or `html`")
        _check_one_line("subject", self.subject)
        for name in ("from_addr", "reply_to"):
            value = getattr(self, name)
            if value is not None:
                _check_address(name, value)
        for name, value in self.headers.items():
            if not _FIELD_NAME.match(name):
                raise ValueError(f"`headers` has a name that is not a header field name: {_shown(name)}")
            _check_one_line(f"headers.{name}", value)


class PublishPost(Payload):
    text: str
    network: Literal["linkedin", "x"] | None = None
    link: str | None = None
    media_urls: list[str] = []

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("`text` is empty")


class UpsertContact(Payload):
    email: str
    first_name: str | None = None
    last_name: str | None = None
    company: str | None = None
    fields: dict[str, Any] = {}

    def __post_init__(self) -> None:
        _check_address("email", self.email)


class EnrichPerson(Payload):
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    domain: str | None = None

    def __post_init__(self) -> None:
        if self.email is not None:
            _check_address("email", self.email)
        elif not (self.first_name and self.last_name and self.domain):
            raise ValueError("give `email`, or `first_name` + `last_name` + `domain`")


class VerifyEmail(Payload):
    email: str

    def __post_init__(self) -> None:
        # Syntax only: an address that merely looks wrong is still the
        # verifier's to judge, but an empty one is a caller's bug.
        if "@" not in self.email:
            raise ValueError(f"`email` is not an email address: {self.email!r}")


class FetchReplies(Payload):
    since: str | None = None          # ISO 8601 time
    mailbox: str = "INBOX"
    limit: int = 50

    def __post_init__(self) -> None:
        if self.limit < 1 or self.limit > 1000:
            raise ValueError("`limit` must be between 1 and 1000")
        if self.since is not None:
            from datetime import datetime

            try:
                datetime.fromisoformat(self.since.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"`since` is not an ISO 8601 time: {self.since!r}") from None


class Dispatch(Payload):
    event: str
    data: dict[str, Any]

    def __post_init__(self) -> None:
        if not self.event.strip():
            raise ValueError("`event` is empty")


@dataclass(frozen=True)
class MethodSpec:
    capability: str
    name: str
    payload: type[Payload]
    # Safe to send again to another provider when an attempt's outcome is
    # unknown (timeout, crash): reads and upserts are, sends and posts are not.
    idempotent: bool


METHODS: dict[str, dict[str, MethodSpec]] = {}
for _spec in (
    MethodSpec("email_sending", "send_email", SendEmail, idempotent=False),
    MethodSpec("social_posting", "publish_post", PublishPost, idempotent=False),
    MethodSpec("crm_sync", "upsert_contact", UpsertContact, idempotent=True),
    MethodSpec("lead_enrichment", "enrich_person", EnrichPerson, idempotent=True),
    MethodSpec("email_verification", "verify_email", VerifyEmail, idempotent=True),
    MethodSpec("reply_fetching", "fetch_replies", FetchReplies, idempotent=True),
    MethodSpec("webhook_dispatch", "dispatch", Dispatch, idempotent=False),
):
    METHODS.setdefault(_spec.capability, {})[_spec.name] = _spec

CAPABILITIES: tuple[str, ...] = tuple(METHODS)



def validate_payload(spec: MethodSpec, payload: Any) -> Payload:
    """Return the payload as its Struct, or raise PayloadError naming the field."""
    if isinstance(payload, spec.payload):
        return payload
    if isinstance(payload, Payload):
        raise PayloadError(f"{spec.name} takes a {spec.payload.__name__}, got a {type(payload).__name__}")
    if not isinstance(payload, dict):
        raise PayloadError(f"{spec.name} takes an object, got {type(payload).__name__}")
    try:
        result = msgspec.convert(payload, spec.payload, strict=True)
    except msgspec.ValidationError as exc:
        message = str(exc)
        path = message.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in message else None
        raise PayloadError(f"{spec.name}: {message}", path) from None
    except UnicodeEncodeError:
        # msgspec cannot even name a field whose name is not valid Unicode
        # (JSON's "\ud800" escape decodes to one): refused like any bad string.
        path = _bad_unicode_path(payload, "$")
        raise PayloadError(f"{spec.name}: a string is not valid Unicode (a lone surrogate) - at `{path}`", path) from None
    try:
        # Everything a payload holds is written somewhere (a journal, the
        # outbox, an email): a string that is not valid Unicode is refused here.
        _encode_json(result)
    except UnicodeEncodeError:
        path = _bad_unicode_path(payload, "$")
        raise PayloadError(f"{spec.name}: a string is not valid Unicode (a lone surrogate) - at `{path}`", path) from None
    return result


_encode_json = msgspec.json.Encoder().encode

# The longest idempotency key `invoke` (and the HTTP API's Idempotency-Key) takes.
MAX_KEY_LENGTH = 256


def check_options(idempotency_key: Any, deadline_s: Any) -> None:
    """The options of `invoke`, refused with a PayloadError that says why."""
    if idempotency_key is not None:
        if not (isinstance(idempotency_key, str) and idempotency_key.strip()):
            raise PayloadError("idempotency_key must be a non-empty string")
        if len(idempotency_key) > MAX_KEY_LENGTH:
            raise PayloadError(f"idempotency_key is {len(idempotency_key)} characters long; at most {MAX_KEY_LENGTH}")
        try:
            idempotency_key.encode()
        except UnicodeEncodeError:
            raise PayloadError("idempotency_key is not valid Unicode (a lone surrogate)") from None
    if deadline_s is not None and (isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float))
                                   or not 0 < deadline_s < float("inf")):
        raise PayloadError(f"deadline_s must be a positive number of seconds, got {str(deadline_s)[:40]!r}")


def _bad_unicode_path(node: Any, path: str) -> str:
    if isinstance(node, str):
        try:
            node.encode()
        except UnicodeEncodeError:
            return path
    elif isinstance(node, dict):
        for key, value in node.items():
            for part, child in ((f"{path}[{key!r}]", key), (f"{path}.{key}", value)):
                found = _bad_unicode_path(child, part)
                if found:
                    return found
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            found = _bad_unicode_path(value, f"{path}[{i}]")
            if found:
                return found
    return ""
