"""What the email stand-ins received, by Message-ID: no email twice, none lost.

Each stand-in records what it accepted, and (SendGrid, Mailgun, with
delivery events on) the outcome drawn for it. A message a provider dropped
and the drop fallback sent again through another provider (same
Message-ID) is re-sent, not a duplicate; two copies that were not dropped
are a duplicate (so is a re-send of one that was not dropped); one with only
dropped copies is lost. For the demo (actors/cli/demo_delivery.py) and the
delivery-events bench.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Copy", "CopyCheck", "check", "copies"]


@dataclass(frozen=True)
class Copy:
    message_id: str      # without the angle brackets
    provider: str
    dropped: bool        # the provider dropped it (its events said so)


@dataclass
class CopyCheck:
    delivered: int = 0                                       # Message-IDs with a copy not dropped
    duplicates: list[str] = field(default_factory=list)      # more than one copy not dropped
    resent: list[str] = field(default_factory=list)          # dropped, then sent again through another provider
    lost: list[str] = field(default_factory=list)            # only dropped copies
    dropped_by: dict[str, int] = field(default_factory=dict)  # provider -> copies it dropped
    resent_via: dict[str, int] = field(default_factory=dict)  # provider -> re-sent copies it took


def copies(sendgrid: Any, mailgun: Any, smtp: Any = None) -> list[Copy]:
    """Every email the stand-ins accepted (SendGridStandIn, MailgunStandIn, SmtpStandIn), each in order."""
    out = [Copy(_bare(m.message["Message-ID"]), "smtp_primary", False) for m in (smtp.received if smtp else [])]
    out += [Copy(_bare((s["body"].get("headers") or {}).get("Message-ID", "")), "sendgrid",
                 "dropped" in s.get("outcomes", ())) for s in sendgrid.sent]
    out += [Copy(_bare(s["id"]), "mailgun", "dropped" in s.get("outcomes", ())) for s in mailgun.sent]
    return [c for c in out if c.message_id]


def check(received: Iterable[Copy]) -> CopyCheck:
    by_id: dict[str, list[Copy]] = defaultdict(list)
    result = CopyCheck()
    for c in received:
        by_id[c.message_id].append(c)
        if c.dropped:
            result.dropped_by[c.provider] = result.dropped_by.get(c.provider, 0) + 1
    for message_id, cs in by_id.items():
        kept = [c for c in cs if not c.dropped]
        if len(kept) > 1:
            result.duplicates.append(message_id)
        if not kept:
            result.lost.append(message_id)
        else:
            result.delivered += 1
            dropped_by = {c.provider for c in cs if c.dropped}
            if dropped_by and all(c.provider not in dropped_by for c in kept):
                result.resent.append(message_id)
                for c in kept:
                    result.resent_via[c.provider] = result.resent_via.get(c.provider, 0) + 1
    return result


def _bare(message_id: str | None) -> str:
    return (message_id or "").strip().strip("<>")
