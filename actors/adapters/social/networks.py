"""The network routing rule of `publish_post`, shared by the social-posting
adapters (their client is `adapters/http.py`, their dry runs
`adapters/previews.py`)."""

from __future__ import annotations

from actors.errors import NotSupported

__all__ = ["serve_network"]


def serve_network(adapter: str, requested: str | None, served: frozenset[str] | set[str]) -> None:
    """The routing rule of `publish_post`: a payload naming a network this
    provider cannot post to is skipped (NotSupported: the router tries the
    next provider and counts no failure). No network means the provider's own."""
    if requested is not None and requested not in served:
        raise NotSupported(f"{adapter} cannot post to {requested!r} (it serves {', '.join(sorted(served))})")
