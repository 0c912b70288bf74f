"""What the social-posting and webhook adapters share beyond `http.py`
(their client) and `previews.py` (their dry runs).

- `serve_network()`: the network routing rule of `publish_post`.
- `iso_timestamp()`: the timestamp format of webhook bodies.
"""

from __future__ import annotations

from datetime import datetime, timezone

from actors.errors import NotSupported

__all__ = ["iso_timestamp", "serve_network"]


def serve_network(adapter: str, requested: str | None, served: frozenset[str] | set[str]) -> None:
    """The routing rule of `publish_post`: a payload naming a network this
    provider cannot post to is skipped (NotSupported: the router tries the
    next provider and counts no failure). No network means the provider's own."""
    if requested is not None and requested not in served:
        raise NotSupported(f"{adapter} cannot post to {requested!r} (it serves {', '.join(sorted(served))})")


def iso_timestamp(epoch_s: float) -> str:
    """ISO 8601 in UTC with milliseconds, e.g. 2026-01-31T12:00:00.000Z."""
    return datetime.fromtimestamp(epoch_s, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
