"""Every stand-in `config/default.yaml` talks to, on loopback, started together.

`config/default.yaml` points the real adapters at these servers through
environment variables (`AICMO_SANDBOX_*`) whose defaults are the fixed ports
below, so `aicmo-gateway sandbox` in one terminal and `aicmo-gateway up
--config config/default.yaml` in another work without credentials. The demo
starts the stack on free ports instead and hands the variables to the config
loader.

IMAP is a real Dovecot when one is installed; without it the IMAP provider
is switched off (`AICMO_SANDBOX_IMAP_ENABLED=false`) and Gmail's API serves
replies alone.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.sandbox.airtable import AirtableStandIn
from actors.sandbox.apollo import ApolloStandIn
from actors.sandbox.ayrshare import AyrshareStandIn
from actors.sandbox.base import SandboxRunner, StandIn
from actors.sandbox.dropcontact import DropcontactStandIn
from actors.sandbox.gmail_api import GmailApiStandIn
from actors.sandbox.hubspot import HubSpotStandIn
from actors.sandbox.linkedin import LinkedInStandIn
from actors.sandbox.mailgun import MailgunStandIn
from actors.sandbox.make import MakeStandIn
from actors.sandbox.neverbounce import NeverBounceStandIn
from actors.sandbox.sendgrid import SendGridStandIn
from actors.sandbox.smtp import SmtpStandIn
from actors.sandbox.webhook import WebhookReceiverStandIn
from actors.sandbox.x import XStandIn
from actors.sandbox.zerobounce import ZeroBounceStandIn

# The fixed ports of `aicmo-gateway sandbox` (and the defaults in config/default.yaml).
FIXED_PORTS = {
    "sendgrid": 18101, "mailgun": 18102, "linkedin": 18103, "x": 18104, "ayrshare": 18105, "airtable": 18106,
    "hubspot": 18107, "apollo": 18108, "dropcontact": 18109, "zerobounce": 18110, "neverbounce": 18111,
    "gmail_api": 18112, "make": 18113, "webhook": 18114, "smtp": 18125, "smtp_tls": 18465, "imap": 18993,
}
IMAP_USER = "ann@example.com"


@dataclass
class SandboxStack:
    fixed_ports: bool = False                 # True: FIXED_PORTS; False: free ports (the demo, tests)
    people: list[dict[str, Any]] | None = None  # whom the enrichment stand-ins know
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="aicmo-sandbox-")))

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o755)  # Dovecot's mail processes run as another user and must reach its mailbox
        self.http: dict[str, StandIn] = {s.name: s for s in (
            SendGridStandIn(), MailgunStandIn(), LinkedInStandIn(), XStandIn(), AyrshareStandIn(),
            AirtableStandIn(), HubSpotStandIn(), ApolloStandIn(people=self.people),
            DropcontactStandIn(people=self.people), ZeroBounceStandIn(), NeverBounceStandIn(), GmailApiStandIn(),
            MakeStandIn(), WebhookReceiverStandIn())}
        self.smtp = SmtpStandIn()
        self.imap: Any = None                 # a DovecotServer when Dovecot is installed
        self.imap_unavailable: str | None = None
        self._runner = SandboxRunner(list(self.http.values()))

    def start(self) -> "SandboxStack":
        ports = FIXED_PORTS if self.fixed_ports else {}
        self._runner.start({name: ports[name] for name in self.http if name in ports})
        self.smtp.start(port=ports.get("smtp", 0), tls_port=ports.get("smtp_tls", 0))
        from actors.sandbox.dovecot import DovecotError, DovecotServer, unavailable_reason

        self.imap_unavailable = unavailable_reason()
        if self.imap_unavailable is None:
            try:
                self.imap = DovecotServer({IMAP_USER: "imap-test-password"}, root=self.root / "dovecot",
                                          port=ports.get("imap")).start()
            except DovecotError as exc:
                self.imap, self.imap_unavailable = None, f"dovecot did not start: {str(exc).splitlines()[0]}"
        return self

    def stop(self) -> None:
        if self.imap is not None:
            self.imap.cleanup()
            self.imap = None
        self.smtp.stop()
        self._runner.stop()

    def __enter__(self) -> "SandboxStack":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """The variables config/default.yaml reads to find these servers."""
        env = {f"AICMO_SANDBOX_{name.upper()}_URL": s.base_url for name, s in self.http.items()}
        env["AICMO_SANDBOX_MAKE_URL"] = self.http["make"].url  # the hook's own URL
        env["AICMO_SANDBOX_WEBHOOK_URL"] = self.http["webhook"].url
        # The keys the email stand-ins sign their delivery events with (events.verification_key).
        env["AICMO_SANDBOX_SENDGRID_EVENT_KEY"] = self.http["sendgrid"].event_public_key
        env["AICMO_SANDBOX_MAILGUN_SIGNING_KEY"] = self.http["mailgun"].webhook_signing_key
        env.update(AICMO_SANDBOX_SMTP_PORT=str(self.smtp.port), AICMO_SANDBOX_SMTP_CA=self.smtp.ca_file,
                   AICMO_SANDBOX_IMAP_ENABLED="true" if self.imap is not None else "false")
        if self.imap is not None:
            env.update(AICMO_SANDBOX_IMAP_PORT=str(self.imap.port), AICMO_SANDBOX_IMAP_CA=self.imap.ca_file)
        return env

    def deliver_reply(self, raw: bytes) -> None:
        """Put a reply in the mailbox both reply providers read."""
        if self.imap is not None:
            self.imap.deliver(IMAP_USER, raw)
        self.http["gmail_api"].add_message(raw)
