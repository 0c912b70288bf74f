"""Local stand-ins for the real providers, used by the tests and the demo.

Each stand-in speaks one provider's documented contract on loopback (paths,
auth headers, status codes, rate-limit headers and bodies) and has knobs to
inject failures, latency and 429s at run time.

Not part of a production install: the servers they run on (aiohttp,
aiosmtpd) and their throwaway certificates (trustme) come with the
`aicmo-gateway[sandbox]` extra, which `make demo` and `make test` install.
Nothing outside this package imports it, but `aicmo-gateway demo` and
`aicmo-gateway sandbox`, which check `missing()` first.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRA", "LIBRARIES", "install_hint", "missing"]

EXTRA = "aicmo-gateway[sandbox]"
LIBRARIES = ("aiohttp", "aiosmtpd", "trustme")


def missing() -> list[str]:
    """The sandbox's libraries this environment lacks (none: it can run)."""
    return [name for name in LIBRARIES if importlib.util.find_spec(name) is None]


def install_hint(what: str) -> str:
    """Says what to install, for a command that needs the stand-ins."""
    return (f"{what} runs local stand-ins of the providers, which need the sandbox extra (missing: "
            f"{', '.join(missing())}): pip install '{EXTRA}' (from a checkout: pip install -e '.[sandbox]')")
