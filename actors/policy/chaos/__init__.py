"""Live fault injection, as pure code: `faults.py` (what a fault is, what it
does to one call, the book of active faults and its events) and `config.py`
(the config at the edge).

Re-exports faults.py's names, so that older imports of `actors.policy.chaos`
keep working.
"""

from actors.policy.chaos import faults as _faults
from actors.policy.chaos.faults import *  # noqa: F403 - the names of faults.__all__

__all__ = list(_faults.__all__)
