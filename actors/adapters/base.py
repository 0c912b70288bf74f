"""The adapter interface.

An adapter is built from its validated `Settings` (a pydantic model: config
stays at the edge) and serves the methods of the capabilities it lists, each
as `async def <method>(self, payload, ctx) -> dict`. It raises only
`ProviderError` subclasses (actors.errors); anything else is counted as the
adapter crashing. `probe()` is the cheap health check: it must never send
anything a person sees or that costs money where a free endpoint exists.

Dry run: `call()` sends dry-run requests to `dry_run()`, which does no I/O.
Adapters override it to show what they would have sent.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr

from actors.errors import NotSupported
from actors.messages import CallContext
from actors.payloads import Payload


class AdapterSettings(BaseModel):
    """Base of every adapter's settings. Unknown keys are refused: a misspelt
    setting must not silently fall back to its default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def secret_values(self) -> list[str]:
        """Every secret's plain value, for redaction."""
        out: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                plain = value.get_secret_value()
                if plain:
                    out.append(plain)
        return out


class Adapter:
    name: ClassVar[str] = ""
    Settings: ClassVar[type[AdapterSettings]] = AdapterSettings
    capabilities: ClassVar[frozenset[str]] = frozenset()   # empty: every capability
    delivers: ClassVar[bool] = True      # False: answers without delivering anything (noop)
    # Settings to check after an auth failure, for recommendations.
    auth_settings: ClassVar[tuple[str, ...]] = ()
    # Whether `probe()` really asks the provider; False says so in self-checks.
    has_probe: ClassVar[bool] = True
    # Methods this provider deduplicates itself when the same request (same
    # idempotency key) arrives twice, so sending it to this provider again
    # after an unknown outcome cannot act twice: LinkedIn refuses duplicate
    # content, a Standard Webhooks receiver drops a repeated webhook-id, an
    # upsert by email lands on the same record.
    resends_deduplicated: ClassVar[frozenset[str]] = frozenset()
    # The outbox: tried only when no real provider can take a request.
    last_resort: ClassVar[bool] = False
    # False for adapters that talk to no outside service (simulated, noop,
    # outbox): nothing for a probe from another node to reach.
    reaches_network: ClassVar[bool] = True

    @classmethod
    def cleartext_settings(cls, settings: AdapterSettings) -> list[str]:
        """Settings that make this provider send credentials (or a secret URL)
        unencrypted over the network: `http://` URLs to a host that is not
        loopback (actors/adapters/cleartext.py). Adapters with other transports
        add their own (SMTP: `tls_mode: none` with AUTH)."""
        from actors.adapters.cleartext import cleartext_urls

        return cleartext_urls(settings)

    @classmethod
    def probes_with(cls, settings: AdapterSettings) -> bool:
        """Whether `probe()` really asks the provider with these settings
        (an optional health URL, say); what self-checks report."""
        return cls.has_probe

    def __init__(self, settings: AdapterSettings, *, capability: str, provider: str, transport: Any = None):
        self.settings = settings
        self.capability = capability
        self.provider = provider
        self.transport = transport

    async def call(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        handler = getattr(self, method, None)
        if handler is None or method.startswith("_"):
            raise NotSupported(f"adapter {self.name!r} does not serve {method!r}")
        if ctx.dry_run:
            return await self.dry_run(method, payload, ctx)
        return await handler(payload, ctx)

    async def dry_run(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any]:
        return {"dry_run": True, "delivered": False, "provider": self.provider, "method": method}

    def would_send(self, method: str, request: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """A dry run's answer: what would have been sent (secrets left out), nothing sent."""
        return {"dry_run": True, "delivered": False, "provider": self.provider, "method": method, **extra,
                "would_send": request}

    async def probe(self) -> None:
        """Raise a ProviderError if the provider cannot take requests now."""

    async def reconcile(self, method: str, payload: Payload, ctx: CallContext) -> dict[str, Any] | None:
        """After an unknown outcome: was the request with `ctx.idempotency_key`
        delivered? Its value if it was, None if it certainly was not. Raise
        NotImplementedError where the provider offers no way to tell (most
        do not); the request is then parked for an operator."""
        raise NotImplementedError

    def warnings(self) -> list[str]:
        """Conditions an operator should see in status (e.g. TLS verification off)."""
        out = []
        if getattr(self.settings, "verify_tls", True) is False:
            out.append("TLS certificate verification is turned off (settings.verify_tls: false)")
        for setting in type(self).cleartext_settings(self.settings):
            out.append(f"credentials cross the network unencrypted (settings.{setting})")
        return out

    def attach(self, store: Any) -> None:
        """Hand the adapter the gateway's durable store (actors.durable). Only
        adapters that keep state of their own (the outbox) use it."""

    async def close(self) -> None:
        """Release connections. Called when the provider actor shuts down."""
