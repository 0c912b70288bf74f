"""The adapter interface.

An adapter is built from its validated `Settings` (a pydantic model: config
stays at the edge) and serves the methods of the capabilities it lists, each
as `async def <method>(self, payload, ctx) -> dict`. It raises only
`ProviderError` subclasses (actors.errors); anything else is counted as the
adapter crashing. `probe()` is the cheap health check: it must never send
anything a person sees or that costs money where a free endpoint exists.

Dry run: `call()` sends dry-run requests to `dry_run()`, which does no I/O.
Adapters override it to show what they would have sent.

Secrets: whatever a provider echoes (NeverBounce repeats the API key in its
errors, an SMTP server the AUTH line), no secret of the settings leaves an
adapter in an error. Its entry points (`call`, `probe`, `reconcile` and
the capability methods such as `send_email`), of this class and of every
subclass that defines its own, mask them with the same Redactor the provider
actor applies again to everything that leaves it (actors/redaction.py).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, SecretStr

from actors.clock import SYSTEM_CLOCK, Clock
from actors.errors import NotSupported, ProviderError
from actors.messages import CallContext
from actors.payloads import METHODS, Payload
from actors.redaction import Redactor

T = TypeVar("T")
# The entry points the provider actor (or a test) calls: what they raise is redacted.
REDACTED_ENTRY_POINTS = frozenset({"call", "probe", "reconcile", "balance", *(m for cap in METHODS.values() for m in cap)})


def _redacting(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    if getattr(method, "_redacting", False):
        return method

    @functools.wraps(method)
    async def entry_point(self: "Adapter", *args: Any, **kwargs: Any) -> T:
        try:
            return await method(self, *args, **kwargs)
        except ProviderError as exc:
            clean = self.redactor(exc.message)
            if clean != exc.message:
                exc.reword(clean or "")
            raise

    entry_point._redacting = True  # type: ignore[attr-defined]
    return entry_point


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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in REDACTED_ENTRY_POINTS:
            if name in cls.__dict__:
                setattr(cls, name, _redacting(cls.__dict__[name]))

    def __init__(self, settings: AdapterSettings, *, capability: str, provider: str, transport: Any = None):
        """`transport`: the client library's seam (each protocol's adapter
        names its type: an httpx transport, an SMTP or IMAP client factory)."""
        self.settings = settings
        self.capability = capability
        self.provider = provider
        self.transport = transport
        self._redactor: Redactor | None = None

    @property
    def redactor(self) -> Redactor:
        """Masks the settings' secrets (and credential-shaped text) in a message."""
        if self._redactor is None:
            self._redactor = Redactor(self.settings.secret_values())
        return self._redactor

    @_redacting
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

    @_redacting
    async def probe(self) -> None:
        """Raise a ProviderError if the provider cannot take requests now."""

    async def balance(self) -> float | None:
        """The provider's live balance in calls (credits left), for those
        whose API tells it; None: no balance to read. Near zero, the provider
        is skipped like a spent quota (actors/provider/spending.py)."""
        return None

    @_redacting
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

    def attach(self, store: Any, clock: Clock = SYSTEM_CLOCK) -> None:
        """Hand the adapter the gateway's durable store (actors.durable) and
        the provider actor's clock. Only adapters that keep state of their
        own (the outbox) use them."""

    async def close(self) -> None:
        """Release connections. Called when the provider actor shuts down."""
