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
]

SECRET_NAME = re.compile(r"(?i)(pass|secret|token|key|credential|auth)")


class Redactor:
    def __init__(self, secrets: list[str] | tuple[str, ...] = ()):
        # Longest first, so a secret that contains another is masked whole.
        # Very short values would mask ordinary words: they are left out.
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def __call__(self, text: str | None) -> str | None:
        if not text:
            return text
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + MASK, text)
        return text

    def extended(self, more: list[str]) -> "Redactor":
        return Redactor([*self._secrets, *more])
