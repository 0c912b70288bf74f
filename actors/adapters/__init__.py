"""Adapters: the only code that talks to the outside world.

Each adapter wraps one provider's API behind the capability methods it
serves (`send_email`, `verify_email`, ...), maps that provider's failures to
our error kinds in one place, and takes its transport as a parameter so unit
tests need no network. See base.py for the interface, registry.py for how a
name in the config becomes a class.
"""
