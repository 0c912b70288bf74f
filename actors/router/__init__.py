"""The router actor of one capability (`router:<capability>`): `actor.py` is
the Ray shell over `core.py`, which runs without Ray.

| module | what |
| --- | --- |
| `actor.py` | `RouterActor`: the Ray actor, its background tasks, status |
| `provider_calls.py` | reaching the provider actors by name; Ray's failures become `ActorUnreachable` |
| `core.py` | `RouterCore`: one request from payload check to result: its key, its rounds (asking policy/rounds.py) |
| `attempts.py` | one round: the plan walked through the gates, attempts, hedges, unknown outcomes settled |
| `planner.py` | the snapshot the plan is made from (policy/planning.py decides); direct order, status ranking, retry hint |
| `finishing.py` | the answer timed, handed to the observers, kept in the recent-operations log |
| `request.py` | one request on its way through the core |
| `results.py` | the `InvokeResult` of each way a request ends |
| `provider_views.py` | the router's picture of its providers: last health, reachability, latency windows, rate buckets |
| `quotas.py` | the router's picture of its providers' quotas |
| `ejection.py` | outlier ejection wired: outcome windows, ejection states, the sweep task |
| `idempotency.py` | keys: claims, first results, replays |
| `unknown_outcomes.py` | settling an attempt whose outcome a crash left unknown |
| `outbox_delivery.py` | delivering an outbox item through the same path as a request |
| `coalesce.py` | batching calls to one provider actor per event-loop turn |

Every decision is policy's (actors/policy, pure code over snapshots): the
modules here read the state, ask, and act.
"""
