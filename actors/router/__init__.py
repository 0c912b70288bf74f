"""The router actor of one capability (`router:<capability>`): `actor.py` is
the Ray shell over `core.py`, which runs without Ray.

| module | what |
| --- | --- |
| `actor.py` | `RouterActor`: the Ray actor, its background tasks, status |
| `core.py` | `RouterCore`: one request from payload check to result: plan, gates, attempts, fallback, hedging |
| `request.py` | one request on its way through the core |
| `results.py` | the `InvokeResult` of each way a request ends |
| `provider_views.py` | the router's picture of its providers: last health, reachability, latency windows, rate buckets |
| `quotas.py` | the router's picture of its providers' quotas, and the plan that skips spent ones |
| `ejection.py` | outlier ejection wired: outcome windows, the sweep task, demotion in the plan |
| `idempotency.py` | keys: claims, first results, replays |
| `unknown_outcomes.py` | settling an attempt whose outcome a crash left unknown |
| `outbox_delivery.py` | delivering an outbox item through the same path as a request |
| `coalesce.py` | batching calls to one provider actor per event-loop turn |
"""
