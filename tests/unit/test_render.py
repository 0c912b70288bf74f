"""What `aicmo-gateway status` prints, from hand-built reports."""

from __future__ import annotations

import re
import time

from rich.console import Console

from actors.cli.render import OTHER_LEGEND, status_table
from actors.errors import ErrorKind
from actors.messages import CapabilityStatus, ProviderStatus, StatusReport


def printed(*providers: ProviderStatus, width: int = 250, skipped: dict[str, str] | None = None) -> str:
    console = Console(record=True, width=width)
    status_table(StatusReport(namespace="aicmo", generated_at=0.0, capabilities=[
        CapabilityStatus(capability="email_sending", providers=list(providers), skipped=skipped or {})]), console)
    return console.export_text()


def row(text: str, name: str) -> list[str]:
    line = next(line for line in text.splitlines() if re.match(rf"\s*\d+\s+{name}\b", line))
    return line.split()


def test_every_call_is_counted_in_a_column() -> None:
    # A request refused by the provider as invalid: rightly not counted against
    # its health, nor delivered: it is in `other`, not in ok or failed.
    refused = ProviderStatus(name="sendgrid", capability="email_sending", adapter="sendgrid", total_calls=1,
                             total_failures=0, total_ok=0, last_error_kind=ErrorKind.INVALID_REQUEST)
    served = ProviderStatus(name="smtp", capability="email_sending", adapter="smtp", total_calls=4, total_ok=3,
                            total_failures=1)
    # HubSpot after the demo: 146 served, 40 answered 429 (its 10-second window), none failed.
    throttled = ProviderStatus(name="hubspot", capability="email_sending", adapter="hubspot", total_calls=186,
                               total_ok=146)
    text = printed(refused, served, throttled)
    header = next(line for line in text.splitlines() if "provider" in line).split()
    assert header[3:7] == ["calls", "ok", "failed", "other"]
    assert row(text, "sendgrid")[3:7] == ["1", "0", "0", "1"]
    assert row(text, "smtp")[3:7] == ["4", "3", "1", "0"]
    assert row(text, "hubspot")[3:7] == ["186", "146", "0", "40"]
    assert OTHER_LEGEND.split(":")[0] + ":" in text and "429" in text


def test_no_legend_when_every_call_was_ok_or_failed() -> None:
    text = printed(ProviderStatus(name="smtp", capability="email_sending", adapter="smtp", total_calls=4, total_ok=3,
                                  total_failures=1))
    assert "429" not in text


def test_the_adapter_is_named_only_when_it_is_not_the_provider_s_name() -> None:
    text = printed(ProviderStatus(name="primary", capability="email_sending", adapter="smtp"),
                   ProviderStatus(name="sendgrid", capability="email_sending", adapter="sendgrid"))
    assert "primary (smtp)" in text and "sendgrid (sendgrid)" not in text


def test_in_80_columns_the_table_fits_and_a_long_note_takes_a_few_lines() -> None:
    now = time.time()
    down = ProviderStatus(
        name="smtp_primary", capability="email_sending", adapter="smtp", health="unhealthy", total_calls=141,
        total_ok=94, total_failures=47, latency_ewma_ms=114.5, last_checked=now - 2, consecutive_failures=3,
        cooldown_until=now + 13, last_error_kind=ErrorKind.TRANSIENT, warnings=["TLS verification is off"],
        last_error="smtp_primary: SMTP 421 at connect: 4.3.2 Service not available, closing transmission channel")
    text = printed(down, ProviderStatus(name="outbox", capability="email_sending", adapter="outbox", delivers=False,
                                        last_resort=True),
                   width=80, skipped={"smtp_primary": "unhealthy, cooling down for 13.1s more: tried last"})
    lines = text.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 80
    assert len([line for line in lines if "smtp_primary" in line]) == 2      # its row, its note's first line
    start = next(i for i, line in enumerate(lines) if line.startswith("  1 smtp_primary:"))
    end = next(i for i, line in enumerate(lines) if line.startswith("  2 outbox:"))
    assert 2 <= end - start <= 4, "\n".join(lines)                          # wrapped at 80, not over 15 lines
    assert "last error (transient): SMTP 421 at connect" in text.replace("\n  ", " ")
    assert "2 outbox: last resort: queues for later" in text
