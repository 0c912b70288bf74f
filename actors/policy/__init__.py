"""Pure policy: no Ray, no I/O, no clock calls; tested with hand-built snapshots.

Health transitions (`health.py`), what a plan knows of one provider
(`candidate.py`), the plan as one pipeline of steps (`planning.py`), the
rankings it may use (`ranking.py`), typed skips (`skips.py`), the gates
before each attempt and the one wait for a throttle (`gates.py`), retry
rounds and their back-off (`rounds.py`), the retry budget, hedging, rate
limits, retry hints, the recommendation type; and in subpackages, cost and
quotas (`cost/`), outlier ejection (`outliers/`), live faults (`chaos/`).
It imports only errors, payloads and the clock's types
(tests/unit/test_structure.py).
"""
