"""The supervisor actor (`supervisor`): the registry of routers and
providers, the status they push, self-checks and recommendations, outbox
draining (`actor.py`), and live faults set from the CLI
(`chaos_control.py`)."""
