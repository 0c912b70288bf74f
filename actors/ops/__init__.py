"""Operations: what an operator needs at 3 a.m.

| module | what |
| --- | --- |
| `audit.py` | the durable audit log: every routing decision (and outlier event) as a JSON line, rotated, no secrets or addresses |
| `chaos_audit.py` | live faults in a capability's audit log (injected, cleared, expired) |
| `privacy.py` | hashing idempotency keys and email addresses for anything written down |
| `metrics.py` | `ray.util.metrics` definitions and the buffered recorders the actors use |
| `hooks.py` | `on_success`, `on_failure`, `on_health_change` callables by dotted path, run off the request's path |
| `observers.py` | what the router and provider actors hook up: audit, metrics, hooks |
| `history.py` | the last hour of sampled provider status, summarized into trends (pure) |
| `reach.py` | probing every provider from every node: the reachability matrix |
| `shared_store.py` | whether the nodes that may host the gateway's actors share its state store |
| `recommend.py` | from probes, status, trends and reachability to recommendations with a fix (pure) |
| `quota_findings.py` | what self-check says of each provider's quota and balance |
| `doctor.py` | `aicmo-gateway doctor`: the local setup, checked before deploying |

The supervisor (`actors/supervisor/self_check.py`) gathers the evidence and
calls the pure code here.
"""
