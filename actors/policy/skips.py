"""Typed reasons a provider is left out of (or moved down) a request's plan,
for the policies added by issue 13 (quotas, outlier ejection).

The seed's `ranking.Skip.reason` is free text, read by people; these are
values code can branch on (a metric label, a status field, an audit record)
without matching strings. `SkipReason` is a `str` enum, so a `Skip` built
with one still carries the text operators have always seen.
"""

from __future__ import annotations

import enum

__all__ = ["SkipReason"]


class SkipReason(str, enum.Enum):
    # The provider's quota for the current period is spent, or its live
    # balance is near zero. Not its fault: never counted against health.
    QUOTA_EXHAUSTED = "quota_exhausted"
    # Outlier ejection took it out of rotation until a time: tried only after
    # every provider that was not ejected (see actors/policy/outlier.py).
    OUTLIER_EJECTED = "outlier_ejected"

    def __str__(self) -> str:
        return self.value
