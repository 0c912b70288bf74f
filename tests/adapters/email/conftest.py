"""Stand-ins for the email_sending tests: a real SMTP server and the HTTP APIs, on loopback.

Each is started once per session (only when a test asks for it) and reset
before every test that uses it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from actors.sandbox.base import SandboxRunner
from actors.sandbox.mailgun import MailgunStandIn
from actors.sandbox.sendgrid import SendGridStandIn
from actors.sandbox.smtp import SmtpStandIn

SMTP_USER = "bot@example.com"
SMTP_PASSWORD = "app-password-1234"
SMTP_TOKEN = "ya29.sandbox-token"
SENDGRID_KEY = "SG.sandbox-key-1234"
MAILGUN_KEY = "key-sandbox-1234"
MAILGUN_SENDING_KEY = "sending-key-1234"
MAILGUN_DOMAIN = "mg.example.com"


@pytest.fixture(scope="session")
def _smtp_server() -> Iterator[SmtpStandIn]:
    server = SmtpStandIn(users={SMTP_USER: SMTP_PASSWORD}, tokens={SMTP_USER: SMTP_TOKEN},
                         refuse_recipients={"nobody@example.com"}).start()
    yield server
    server.stop()


@pytest.fixture
def smtp_server(_smtp_server: SmtpStandIn) -> SmtpStandIn:
    _smtp_server.reset()
    return _smtp_server


@pytest.fixture(scope="session")
def _http_sandbox() -> Iterator[SandboxRunner]:
    runner = SandboxRunner([
        SendGridStandIn(api_key=SENDGRID_KEY),
        MailgunStandIn(api_key=MAILGUN_KEY, sending_key=MAILGUN_SENDING_KEY, domains=(MAILGUN_DOMAIN,)),
    ]).start()
    yield runner
    runner.stop()


@pytest.fixture
def http_sandbox(_http_sandbox: SandboxRunner) -> SandboxRunner:
    from actors.sandbox.base import Faults

    for stand_in in _http_sandbox.stand_ins.values():
        stand_in.faults = Faults()
        stand_in.received.clear()
        stand_in.reset()
    return _http_sandbox
