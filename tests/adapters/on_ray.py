"""What the tests of the crm_sync, lead_enrichment and email_verification
adapters on Ray share: a gateway of stand-ins whose attempts follow the
configured order, the stand-ins' faults set per test, and what a result's
attempts were."""

from __future__ import annotations

from typing import Any

from actors.errors import ErrorKind
from actors.sandbox.base import Faults, SandboxRunner

KEY = "ray-stand-in-key"
# Strict priority, a high unhealthy threshold, fallbacks never capped by the
# retry budget, and no waiting for a throttle to pass: each step's attempts
# are then exactly the configured order's.
POLICY = {"routing": {"ranking": "actors.policy.ranking:configured_order", "attempt_timeout_s": 3, "deadline_s": 20,
                      "retry_budget": {"percent": 100, "min_per_s": 1000}, "wait_for_throttle": False},
          "health": {"unhealthy_after": 50, "default_throttle_s": 30}}


def faults(sandbox: SandboxRunner, **per_stand_in: dict[str, Any]) -> None:
    """Set each named stand-in's faults; every other stand-in gets none."""
    for name, stand_in in sandbox.stand_ins.items():
        stand_in.faults = Faults()
        stand_in.faults.update(dict(per_stand_in.get(name, {})))


def trail(result: Any) -> list[tuple[str, ErrorKind | None]]:
    return [(a.provider, a.error_kind) for a in result.attempts]


def status(gw: Any, capability: str, name: str) -> Any:
    return gw.ray.get(gw.provider(capability, name).status.remote())


def provider(sandbox: SandboxRunner, adapter: str, name: str | None = None, **settings: Any) -> dict[str, Any]:
    secret = {"token": KEY} if adapter in ("airtable", "hubspot") else {"api_key": KEY}
    return {"name": name or adapter, "adapter": adapter,
            "settings": {"base_url": sandbox.url(adapter), **secret, **settings}}
