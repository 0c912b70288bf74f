"""The provider actor of one configured provider
(`provider:<capability>:<provider>`): `actor.py` is the Ray shell over
`core.py`, which runs without Ray. Its collaborators come in through the
core's constructor: the clock (actors/clock.py), the store, the listeners.

| module | what |
| --- | --- |
| `actor.py` | `ProviderActor`: the Ray actor, building the core with its listeners |
| `core.py` | `ProviderCore`: the adapter, its health (the one writer), the concurrency limit, one attempt, probes, status |
| `listener.py` | `ProviderListener`: what the provider tells its observers (replies, health, spend, quota flips, faults) |
| `peers.py` | `Peers`: the listener pushing health and quota changes to the router and the supervisor |
| `keyed_sends.py` | a batch of keyed, non-idempotent sends: each key claimed and sent once, whoever asks |
| `journal.py` | the two claims on a key (in memory, in the delivery journal) and the journaled outcomes |
| `journaled_send.py` | one round of sends with the journal around it; replies made without an attempt |
| `settling.py` | settling a send whose outcome a crash or a timeout left unknown (`resolve`) |
| `spending.py` | spend, quota and live balance: metering each call |
| `faults.py` | a live fault (`chaos inject`) applied before the adapter |
"""
