"""The config of live fault injection (`chaos`), as a pydantic model at the
edge; `to_policy()` gives the `ChaosPolicy` actors/policy/chaos/faults.py reads.

    chaos: {allowed: false}     # `aicmo-gateway chaos inject` then says it is forbidden

Off by default (issue 21): a production gateway never sees a fault unless
its config says `chaos: {allowed: true}`. The sandbox and demo configs
allow it, for game days. When allowed, a fault is bounded in time (at most
`max_duration_s`, on the supervisor's clock, not the caller's), ends by
itself, touches one provider, and is recorded in the audit log with who
says they set it; `up` says that chaos is allowed.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from actors.policy.chaos.faults import ChaosPolicy

__all__ = ["ChaosConfig"]

_D = ChaosPolicy()


class ChaosConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    allowed: bool = Field(_D.allowed, description="allow `aicmo-gateway chaos inject` on this gateway")
    max_duration_s: float = Field(_D.max_duration_s, gt=0, le=86400, description="the longest a fault may last")
    max_latency_ms: float = Field(_D.max_latency_ms, ge=0, description="the most latency a fault may add to a call")

    def to_policy(self) -> ChaosPolicy:
        return ChaosPolicy(allowed=self.allowed, max_duration_s=self.max_duration_s, max_latency_ms=self.max_latency_ms)
