"""Operations: what an operator needs at 3 a.m.

| module | what |
| --- | --- |
| `audit.py` | the durable audit log: every routing decision as a JSON line, rotated, no secrets or addresses |
| `privacy.py` | hashing idempotency keys and email addresses for anything written down |
| `metrics.py` | `ray.util.metrics` definitions and the buffered recorders the actors use |
| `hooks.py` | `on_success`, `on_failure`, `on_health_change` callables by dotted path, run off the request's path |
| `observers.py` | what the router and provider actors hook up: audit, metrics, hooks |
| `history.py` | the last hour of sampled provider status, summarized into trends (pure) |
| `reach.py` | probing every provider from every node: the reachability matrix |
| `doctor.py` | `aicmo-gateway doctor`: the local setup, checked before deploying |

The decisions themselves (what to recommend) are pure code in
`actors/policy/recommend.py`; the supervisor (`actors/runtime/supervisor.py`)
gathers the evidence.
"""
