"""One webhook request, from raw bytes to events: size, signature,
freshness and replay checked, in that order, before anything is read for
its content. Pure but for the replay memory it is given; the clock is the
caller's."""

from __future__ import annotations

from collections.abc import Mapping

from actors.events import FORMATS
from actors.events.guard import ReplayGuard, check_size
from actors.events.model import DeliveryEvent

__all__ = ["EventIntake"]


class EventIntake:
    def __init__(self, adapter: str, verification_key: str, guard: ReplayGuard | None = None):
        fmt = FORMATS.get(adapter)
        if fmt is None:
            raise ValueError(f"delivery events are read for {', '.join(sorted(FORMATS))}; not for {adapter!r}")
        self.adapter = adapter
        self._verifier = fmt.verifier(verification_key)
        self._parse = fmt.parse
        self._guard = guard or ReplayGuard()

    def accept(self, body: bytes, headers: Mapping[str, str], now: float) -> list[DeliveryEvent]:
        """The events of a genuine request; SignatureRefused otherwise.
        `headers` with lower-case names."""
        check_size(len(body))
        verified = self._verifier.verify(body, headers)
        self._guard.admit(verified, now)
        return self._parse(body)
