"""Adapters: the only code that talks to the outside world.

Each adapter wraps one provider's API behind the capability methods it
serves (`send_email`, `verify_email`, ...), maps that provider's failures to
our error kinds in one place, and takes its transport as a parameter so unit
tests need no network. See base.py for the interface, registry.py for how a
name in the config becomes a class.

One folder per family of providers: `email/`, `social/`, `crm/`,
`enrichment/`, `verification/`, `replies/`, `webhooks/`. What they share
stays here: `base.py`, `registry.py`, `http.py` (the HTTP client and httpx's
error table), `tls.py`, `errormap.py` (foreign exceptions to our error kinds,
and `classify`, any exception to a kind), `cleartext.py` (settings that
would send credentials unencrypted), `previews.py` (dry runs), and the
adapters of every capability: `noop.py`, `simulated.py`, `outbox.py`.
"""
