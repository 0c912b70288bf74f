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

__all__ = ["SCOPE_CHARS", "ApiKeys", "scoped_key"]

# `c<12 hex>/`: what an idempotency key is prefixed with, per API key.
SCOPE_CHARS = 14


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
        return None if self._match(token) is not None else "the API key is not valid"

    def caller(self, authorization: str | None) -> str | None:
        """Who is calling, for a valid key: `c` and 12 hex of a hash of its
        digest (neither the key nor its digest); None for no valid key."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        digest = self._match(token.strip()) if scheme.lower() == "bearer" else None
        return None if digest is None else "c" + hashlib.sha256(b"caller:" + digest).hexdigest()[:12]

    def _match(self, token: str) -> bytes | None:
        if not token:
            return None
        presented = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found = None
        for digest in self._digests:  # all of them, whichever matches
            if hmac.compare_digest(presented, digest):
                found = digest
        return found


def scoped_key(caller: str, key: str) -> str:
    """An idempotency key as the router holds it for one API key's holder:
    two callers' `order-42` are two keys, so one cannot read the other's
    stored result, nor learn from a 422 that the key is in use."""
    return f"{caller}/{key}"
