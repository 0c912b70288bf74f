"""A recommendation: what self-check tells an operator to do, as data.

Each names the capability and provider, the problem, the evidence and a
concrete fix (the config path or environment variable to check). Pure
policy writes them (actors/policy/cost/quota.py for quotas, and
actors/ops/recommend.py for everything else); the supervisor's
`SelfCheckReport` (actors/messages.py, which re-exports this) carries them.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["Recommendation"]


class Recommendation(msgspec.Struct, frozen=True, kw_only=True):
    severity: str            # "critical", "warning", "info"
    capability: str
    provider: str | None
    problem: str
    evidence: str
    fix: str

    def to_dict(self) -> dict[str, Any]:
        return msgspec.to_builtins(self)
