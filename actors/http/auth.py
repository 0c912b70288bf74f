"""Bearer API keys, checked in constant time.

The ingress holds only the keys' SHA-256 digests (HttpSpec.key_digests): a
presented key is hashed and compared with every digest by
hmac.compare_digest, all of them, so neither the comparison nor the number
of keys tried shows how close a guess came. Keys are never logged.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

__all__ = ["ApiKeys"]


class ApiKeys:
    def __init__(self, digests: Sequence[str]):
        self._digests = [bytes.fromhex(d) for d in digests]

    def check(self, authorization: str | None) -> str | None:
        """None when the header carries a valid key; else why not (without the key)."""
        if not authorization:
            return "this endpoint needs an API key: send `Authorization: Bearer <key>`"
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "the Authorization header must be `Bearer <key>`"
        presented = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        valid = False
        for digest in self._digests:
            valid |= hmac.compare_digest(presented, digest)
        return None if valid else "the API key is not valid"
