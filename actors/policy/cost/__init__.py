"""Cost and quotas, as pure code: `quota.py` (what a call costs, a period's
spend, whether a quota or a live balance is spent) and `config.py` (the
config at the edge). The plan leaves out a provider whose quota is spent
(policy/planning.py: `spent_quotas`).

Re-exports quota.py's names, so that `actors.policy.cost:by_cost` (a
ranking a config may name, as `actors.policy.ranking:by_cost`) and older
imports keep working.
"""

from actors.policy.cost import quota as _quota
from actors.policy.cost.quota import *  # noqa: F403 - the names of quota.__all__

__all__ = list(_quota.__all__)
