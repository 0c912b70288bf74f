"""One webhook request, from raw bytes to events: size, signature,
freshness and replay checked, in that order, before anything is read for
its content. Pure but for the replay memory it is given; the clock is the
caller's."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from actors.events.guard import ReplayGuard, check_size
from actors.events.mailgun import MailgunVerifier, parse_mailgun
from actors.events.model import DeliveryEvent, Verified
from actors.events.sendgrid import SendGridVerifier, parse_sendgrid

__all__ = ["FORMATS", "EventIntake", "Verifier"]


class Verifier(Protocol):
    def verify(self, body: bytes, headers: Mapping[str, str]) -> Verified: ...


# By adapter name (a provider's `adapter:`): its verifier (built from the
# configured key) and its reader.
FORMATS: dict[str, tuple[Callable[[str], Verifier], Callable[[bytes], list[DeliveryEvent]]]] = {
    "sendgrid": (SendGridVerifier, parse_sendgrid),
    "mailgun": (MailgunVerifier, parse_mailgun),
}


class EventIntake:
    def __init__(self, adapter: str, verification_key: str, guard: ReplayGuard | None = None):
        fmt = FORMATS.get(adapter)
        if fmt is None:
            raise ValueError(f"delivery events are read for {', '.join(sorted(FORMATS))}; not for {adapter!r}")
        self.adapter = adapter
        make_verifier, self._parse = fmt
        self._verifier = make_verifier(verification_key)
        self._guard = guard or ReplayGuard()

    def accept(self, body: bytes, headers: Mapping[str, str], now: float) -> list[DeliveryEvent]:
        """The events of a genuine request; SignatureRefused otherwise.
        `headers` with lower-case names."""
        check_size(len(body))
        verified = self._verifier.verify(body, headers)
        self._guard.admit(verified, now)
        return self._parse(body)
