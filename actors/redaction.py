"""Keeping secrets out of everything that leaves a provider actor.

Secrets are known by value (every SecretStr in an adapter's settings, and
every value read from an environment variable whose name says secret), so
an error message that echoes a password or a token is cleaned whatever its
shape. Common credential patterns are masked too, for secrets we never saw.
"""

from __future__ import annotations

import re

MASK = "***"

_PATTERNS = [
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{4,}"),
    re.compile(r"(?i)(basic\s+)[A-Za-z0-9+/=]{4,}"),
    re.compile(r"(?i)((?:api_key|apikey|key|token|access_token|password|secret)=)[^&\s\"']+"),
    re.compile(r"(?i)(\"(?:api_key|apikey|token|access_token|password|secret)\"\s*:\s*\")[^\"]+"),
    # A URL's userinfo password (`https://user:pass@host`); the user is kept.
    re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@\"']*:)[^\s@/?#\"']+(?=@)"),
]

SECRET_NAME = re.compile(r"(?i)(pass|secret|token|key|credential|auth)")


def _parts_of_url(secret: str) -> list[str]:
    """A secret that is a URL (a Make hook, a webhook with a token) is secret
    by its path: a provider's error may quote just that."""
    from urllib.parse import parse_qsl, urlsplit

    if "://" not in secret:
        return []
    try:
        url = urlsplit(secret)
    except ValueError:
        return []
    parts = [url.path, url.path.rstrip("/").rsplit("/", 1)[-1]]
    if url.password:
        from urllib.parse import unquote
        parts += [url.password, unquote(url.password)]
    parts += [value for _, value in parse_qsl(url.query)]
    return [p for p in parts if len(p) >= 8]


class Redactor:
    def __init__(self, secrets: list[str] | tuple[str, ...] = ()):
        # Longest first, so a secret that contains another is masked whole.
        # Very short values would mask ordinary words: they are left out.
        wanted = {s for s in secrets if s and len(s) >= 4}
        wanted |= {part for s in list(wanted) for part in _parts_of_url(s)}
        self._secrets = sorted(wanted, key=len, reverse=True)

    def __call__(self, text: str | None) -> str | None:
        if not text:
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        return text

    def value(self, node: object) -> object:
        """Every string in a value (dicts, lists) redacted: what a dry run
        returns shows the request it would send, which may hold secrets."""
        if isinstance(node, str):
            return self(node)
        if isinstance(node, dict):
            return {k: self.value(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [self.value(v) for v in node]
        return node

    def extended(self, more: list[str]) -> "Redactor":
        return Redactor([*self._secrets, *more])
