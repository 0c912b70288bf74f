"""SMTP failures as our error kinds: two tables, one per stage of an answer.

- `REPLY_KINDS`: a reply code the server sent (RFC 5321 4.2, RFC 3463
  enhanced codes), read by `reply_error`. A reply is an answer: nothing was
  delivered.
- `AIOSMTPLIB_ERRORS`: every exception aiosmtplib exports, plus the network
  and TLS errors that reach us through it (errormap.py). Where the attempt
  was decides whether the message may have gone out: only from the DATA
  command on can the server hold the message although we saw no 250.
  aiosmtplib sends DATA and the payload in one call, so a timeout while
  waiting for the 354 cannot be told from one after the payload; both count
  as `maybe_delivered` (the safe side: parked, never sent twice by us).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import Any

from actors.adapters.errormap import ExceptionMap
from actors.errors import (
    AttemptTimeout,
    AuthError,
    ProviderError,
    ProviderRejected,
    RateLimited,
    TransientError,
)

__all__ = ["AIOSMTPLIB_ERRORS", "QUOTA_RETRY_AFTER_S", "REPLY_KINDS", "SmtpCall", "map_exception", "reply_error"]

# Gmail (and others) answer `550 5.4.5 Daily user sending quota exceeded`
# when the account's rolling 24-hour quota is used up, and then refuse mail
# for up to 24 h. The reply does not say when the window frees up, so the
# provider is throttled for an hour: long enough that other providers take
# the traffic instead of each request finding out again, short enough to
# notice soon after the oldest messages leave the window.
QUOTA_RETRY_AFTER_S = 3600.0

# SMTP reply code -> error kind. 535 bad credentials, 534 mechanism too weak /
# app password needed (Gmail), 530 authentication required; 454 temporary
# authentication (or TLS) failure; 421 service not available / try later,
# 450 mailbox busy / receiving too fast, 451 local error / try later,
# 452 too many recipients or insufficient storage: all "come back later".
REPLY_KINDS: dict[int, type[ProviderError]] = {
    535: AuthError,
    534: AuthError,
    530: AuthError,
    454: TransientError,
    421: RateLimited,
    450: RateLimited,
    451: RateLimited,
    452: RateLimited,
}


def reply_error(code: int, text: str, provider: str, stage: str,
                quota_retry_after_s: float = QUOTA_RETRY_AFTER_S) -> ProviderError:
    """An SMTP error reply as our error. A reply is an answer: nothing was delivered."""
    text = " ".join(str(text).split())[:300]
    message = f"{provider}: SMTP {code} at {stage}: {text}"
    if stage == "auth" and 500 <= code < 600:
        # A permanent refusal of AUTH (535 bad credentials, but also 538
        # encryption required, 504 mechanism not supported, 534 too weak)
        # says our credentials or how we present them must change: never
        # the payload's fault, always worth the credentials recommendation.
        return AuthError(message, status=code)
    if code == 550 and "5.4.5" in text:  # daily sending quota exceeded
        return RateLimited(message, retry_after_s=quota_retry_after_s, status=code)
    if code == 421 and "4.3.2" in text:  # "service not available": the server is going down, not pacing us
        return TransientError(message, status=code)
    kind = REPLY_KINDS.get(code)
    if kind is not None:
        return kind(message, status=code)
    if 500 <= code < 600:
        return ProviderRejected(message, status=code)
    return TransientError(message, status=code)


@dataclass(frozen=True)
class SmtpCall:
    """What a rule knows of the attempt that failed: where it was."""

    provider: str
    stage: str          # connect, starttls, auth, mail, rcpt, data, noop, quit, ...
    settings: Any       # SmtpSettings: the host, port, quota throttle

    @property
    def after_data(self) -> bool:
        return self.stage == "data"

    @property
    def where(self) -> str:
        return "after the message data was sent" if self.after_data else f"at {self.stage}"


def _recipients_refused(exc: Any, at: SmtpCall) -> ProviderError:
    first = exc.recipients[0] if exc.recipients else None
    if first is None:
        return ProviderRejected(f"{at.provider}: every recipient was refused")
    error = reply_error(first.code, first.message, at.provider, "rcpt", at.settings.quota_retry_after_s)
    if len(exc.recipients) > 1:
        error.reword(f"{error.message} (and {len(exc.recipients) - 1} more recipient(s) refused)")
    return error


def _reply(exc: Any, at: SmtpCall) -> ProviderError:
    return reply_error(exc.code, exc.message, at.provider, at.stage, at.settings.quota_retry_after_s)


def _connect_timeout(exc: BaseException, at: SmtpCall) -> ProviderError:
    return AttemptTimeout(f"{at.provider}: no connection to {at.settings.host}:{at.settings.port} in time")


def _certificate(exc: BaseException, at: SmtpCall) -> ProviderError:
    detail = getattr(exc, "verify_message", None) or exc
    return TransientError(f"{at.provider}: TLS certificate of {at.settings.host} not trusted: {detail} "
                          "(check `ca_file`, or the host name)")


def _tls(exc: BaseException, at: SmtpCall) -> ProviderError:
    return TransientError(f"{at.provider}: TLS failed at {at.stage}: {exc}")


def _connect(exc: BaseException, at: SmtpCall) -> ProviderError:
    """Refused, unreachable, reset during the greeting, or TLS failed on
    connecting (implicit TLS): nothing was sent."""
    cause = exc.__cause__ or exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return _certificate(cause, at)
    if isinstance(cause, ssl.SSLError):
        return _tls(cause, at)
    return TransientError(f"{at.provider}: cannot connect to {at.settings.host}:{at.settings.port}: {cause}")


def _timeout(exc: BaseException, at: SmtpCall) -> ProviderError:
    detail = f" ({exc})" if str(exc) else ""
    return AttemptTimeout(f"{at.provider}: no SMTP reply in time {at.where}{detail}", maybe_delivered=at.after_data)


def _lost(exc: BaseException, at: SmtpCall) -> ProviderError:
    return TransientError(f"{at.provider}: connection lost {at.where}: {exc}", maybe_delivered=at.after_data)


def _rejected(exc: BaseException, at: SmtpCall) -> ProviderError:
    # SMTPNotSupported, or an address aiosmtplib refuses to send safely (ValueError).
    return ProviderRejected(f"{at.provider}: {exc}")


def _other(exc: BaseException, at: SmtpCall) -> ProviderError:
    text = str(exc)
    if at.stage == "auth" or "AUTH" in text:
        return AuthError(f"{at.provider}: {text}")
    return TransientError(f"{at.provider}: {text} (at {at.stage})", maybe_delivered=at.after_data)


AIOSMTPLIB_ERRORS: ExceptionMap[SmtpCall] = ExceptionMap("aiosmtplib", {
    "SMTPRecipientsRefused": _recipients_refused,
    "SMTPResponseException": _reply,
    "SMTPAuthenticationError": _reply,
    "SMTPDataError": _reply,
    "SMTPHeloError": _reply,
    "SMTPRecipientRefused": _reply,
    "SMTPSenderRefused": _reply,
    "SMTPConnectResponseError": _reply,
    "SMTPConnectTimeoutError": _connect_timeout,
    "SMTPConnectError": _connect,
    "SMTPTimeoutError": _timeout,
    "SMTPReadTimeoutError": _timeout,
    "SMTPServerDisconnected": _lost,
    "SMTPNotSupported": _rejected,
    "SMTPException": _other,
}, {
    ssl.SSLCertVerificationError: _certificate,
    ssl.SSLError: _tls,
    TimeoutError: _timeout,
    asyncio.TimeoutError: _timeout,
    ConnectionError: _lost,
    OSError: _lost,
    ValueError: _rejected,
})


def map_exception(exc: BaseException, provider: str, stage: str, settings: Any) -> ProviderError:
    """Translate what aiosmtplib (or the network) raised at `stage` into our error."""
    return AIOSMTPLIB_ERRORS.translate(exc, SmtpCall(provider, stage, settings))
