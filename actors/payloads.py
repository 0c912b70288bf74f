"""The capabilities, their methods and each method's payload.

A payload is validated into its Struct before any provider is called, so a
bad request costs no provider call and says which field is wrong. Unknown
fields are refused: a misspelt `txt` would otherwise send an empty email.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

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


# Per-field limits, for every caller (Ray clients too, not only the HTTP
# API's body cap): what a payload holds is journaled, kept in the outbox,
# and may be echoed in errors. Generous beside what providers accept.
MAX_BODY_CHARS = 2_000_000         # text/html of an email
MAX_POST_CHARS = 100_000           # a post's text (networks take far less)
MAX_LINE_CHARS = 998               # a header line (RFC 5322), a subject
MAX_NAME_CHARS = 1_000             # names, companies, mailboxes, events
MAX_URL_CHARS = 2_048
MAX_HEADERS = 50
MAX_MEDIA_URLS = 20
MAX_FIELDS = 200
MAX_DATA_BYTES = 1_000_000         # `fields`, `data`, encoded as JSON

Body = Annotated[str, Meta(max_length=MAX_BODY_CHARS)]
Line = Annotated[str, Meta(max_length=MAX_LINE_CHARS)]
Name = Annotated[str, Meta(max_length=MAX_NAME_CHARS)]
Url = Annotated[str, Meta(max_length=MAX_URL_CHARS)]
Address = Annotated[str, Meta(max_length=MAX_LINE_CHARS)]


def shown(value: Any, limit: int = 80) -> str:
    """A bad value quoted in an error, cut short: errors are logged and audited."""
    if not isinstance(value, str):  # whatever a caller sent in its place (a list, a dict, ...)
        text = repr(value)
        return text if len(text) <= limit else text[:limit] + "..."
    return repr(value if len(value) <= limit else value[:limit] + "...")


def clamp_deadline(asked_s: float | None, default_s: float, max_s: float | None) -> float:
    """The deadline a request runs under: the caller's (already checked by
    `check_options`), cut to the configured maximum (`routing.max_deadline_s`,
    else `routing.deadline_s`). An unbounded one would hold an ingress slot
    and a key claim's lease through every throttle and retry round."""
    most = max_s if max_s is not None else default_s
    return min(float(asked_s or default_s), most)


def _check_address(field: str, value: str) -> None:
    if len(value) > 254 or not _ADDRESS.match(value):
        raise ValueError(f"`{field}` is not an email address: {shown(value)}")


def _check_one_line(field: str, value: str) -> None:
    if any(c in _LINE_BREAKS for c in value):
        raise ValueError(f"`{field}` holds a line break")


class Payload(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every method payload."""


class SendEmail(Payload):
    to: list[Address]
    subject: Line
    text: Body | None = None
    html: Body | None = None
    from_addr: Address | None = None
    reply_to: Address | None = None
    headers: Annotated[dict[str, Line], Meta(max_length=MAX_HEADERS)] = {}

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
                raise ValueError(f"`headers` has a name that is not a header field name: {shown(name)}")
            _check_one_line(f"headers.{name}", value)


class PublishPost(Payload):
    text: Annotated[str, Meta(max_length=MAX_POST_CHARS)]
    network: Literal["linkedin", "x"] | None = None
    link: Url | None = None
    media_urls: Annotated[list[Url], Meta(max_length=MAX_MEDIA_URLS)] = []

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError("`text` is empty")


class UpsertContact(Payload):
    email: Address
    first_name: Name | None = None
    last_name: Name | None = None
    company: Name | None = None
    fields: Annotated[dict[Name, Any], Meta(max_length=MAX_FIELDS)] = {}

    def __post_init__(self) -> None:
        _check_address("email", self.email)
        _check_size("fields", self.fields)


class EnrichPerson(Payload):
    email: Address | None = None
    first_name: Name | None = None
    last_name: Name | None = None
    domain: Name | None = None

    def __post_init__(self) -> None:
        if self.email is not None:
            _check_address("email", self.email)
        elif not (self.first_name and self.last_name and self.domain):
            raise ValueError("give `email`, or `first_name` + `last_name` + `domain`")


class VerifyEmail(Payload):
    email: Address

    def __post_init__(self) -> None:
        # Syntax only: an address that merely looks wrong is still the
        # verifier's to judge, but an empty one is a caller's bug.
        if "@" not in self.email:
            raise ValueError(f"`email` is not an email address: {shown(self.email)}")


class FetchReplies(Payload):
    since: Annotated[str, Meta(max_length=64)] | None = None          # ISO 8601 time
    mailbox: Name = "INBOX"
    limit: int = 50

    def __post_init__(self) -> None:
        if self.limit < 1 or self.limit > 1000:
            raise ValueError("`limit` must be between 1 and 1000")
        if self.since is not None:
            from datetime import datetime

            try:
                datetime.fromisoformat(self.since.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(f"`since` is not an ISO 8601 time: {shown(self.since)}") from None


class Dispatch(Payload):
    event: Name
    data: dict[str, Any]

    def __post_init__(self) -> None:
        if not self.event.strip():
            raise ValueError("`event` is empty")
        _check_size("data", self.data)


def _check_size(field: str, value: Any) -> None:
    try:
        size = len(_encode_json(value))
    except (msgspec.EncodeError, TypeError, UnicodeEncodeError):
        return  # validate_payload refuses what cannot be encoded, naming the field
    if size > MAX_DATA_BYTES:
        raise ValueError(f"`{field}` is {size} bytes as JSON; at most {MAX_DATA_BYTES}")


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
        # msgspec quotes a bad enum value whole, and a path names dict keys:
        # both are the caller's text, shortened as every echoed value is.
        text, at, path = str(exc).rpartition(" - at `") if " - at `" in str(exc) else (str(exc), "", "")
        path = _cut(path.rstrip("`")) if at else None
        raise PayloadError(f"{spec.name}: {_cut(text)}" + (f" - at `{path}`" if path else ""), path) from None
    except UnicodeEncodeError:
        # msgspec cannot even name a field whose name is not valid Unicode
        # (JSON's "\ud800" escape decodes to one): refused like any bad string.
        path = _cut(_bad_unicode_path(payload, "$"))
        raise PayloadError(f"{spec.name}: a string is not valid Unicode (a lone surrogate) - at `{path}`", path) from None
    try:
        # Everything a payload holds is written somewhere (a journal, the
        # outbox, an email): a string that is not valid Unicode is refused here.
        _encode_json(result)
    except UnicodeEncodeError:
        path = _cut(_bad_unicode_path(payload, "$"))
        raise PayloadError(f"{spec.name}: a string is not valid Unicode (a lone surrogate) - at `{path}`", path) from None
    return result


def _cut(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


_encode_json = msgspec.json.Encoder().encode

# The longest idempotency key `invoke` (and the HTTP API's Idempotency-Key) takes.
MAX_KEY_LENGTH = 256
_KEY_CHARS = re.compile(r"[ -~]+")


def check_options(idempotency_key: Any, deadline_s: Any) -> None:
    """The options of `invoke`, refused with a PayloadError that says why."""
    if idempotency_key is not None:
        if not (isinstance(idempotency_key, str) and idempotency_key.strip()):
            raise PayloadError("idempotency_key must be a non-empty string")
        if len(idempotency_key) > MAX_KEY_LENGTH:
            raise PayloadError(f"idempotency_key is {len(idempotency_key)} characters long; at most {MAX_KEY_LENGTH}")
        if not _KEY_CHARS.fullmatch(idempotency_key):
            # Keys reach logs, terminals and HTTP headers: control characters,
            # escapes and look-alike letters have no place in one.
            raise PayloadError("idempotency_key must be printable ASCII (letters, digits, punctuation, spaces)")
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
