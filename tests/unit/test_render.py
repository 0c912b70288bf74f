"""What `aicmo-gateway status` prints, from hand-built reports."""

from __future__ import annotations

from rich.console import Console

from actors.cli.render import status_table
from actors.errors import ErrorKind
from actors.messages import CapabilityStatus, ProviderStatus, StatusReport


def printed(*providers: ProviderStatus) -> str:
    console = Console(record=True, width=250)
    status_table(StatusReport(namespace="aicmo", generated_at=0.0, capabilities=[
        CapabilityStatus(capability="email_sending", providers=list(providers))]), console)
    return console.export_text()


def test_ok_over_calls_counts_what_was_delivered() -> None:
    # One request, refused by the provider as invalid: rightly not counted
    # against its health, but nothing was delivered: 0/1, not 1/1.
    refused = ProviderStatus(name="sendgrid", capability="email_sending", adapter="sendgrid", total_calls=1,
                             total_failures=0, total_ok=0, last_error_kind=ErrorKind.INVALID_REQUEST)
    served = ProviderStatus(name="smtp", capability="email_sending", adapter="smtp", total_calls=4, total_ok=3,
                            total_failures=1)
    text = printed(refused, served)
    assert " 0/1 " in text and " 1/1 " not in text
    assert " 3/4 " in text
