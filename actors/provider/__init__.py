"""The provider actor of one configured provider
(`provider:<capability>:<provider>`): `actor.py` is the Ray shell over
`core.py`, which runs without Ray.

| module | what |
| --- | --- |
| `actor.py` | `ProviderActor`: the Ray actor, pushing health changes to the router and supervisor |
| `core.py` | `ProviderCore`: the adapter, its health, the concurrency limit, attempts and probes |
| `journal.py` | the delivery journal of keyed, non-idempotent sends |
| `spending.py` | spend, quota and live balance: metering each call |
| `faults.py` | a live fault (`chaos inject`) applied before the adapter |
"""
