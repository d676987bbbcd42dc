"""Deployment tokens: random, shown once, stored only as a SHA-256 digest.

A token carries 256 bits of randomness, so a fast hash is enough: there is nothing
to brute-force. Lookup is by digest, so the secret itself is never compared.
"""

import hashlib
import secrets

TOKEN_PREFIX = "rl_"  # noqa: S105 (a marker, not a secret)


def token_generate() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_looks_valid(token: str) -> bool:
    return token.startswith(TOKEN_PREFIX) and 20 <= len(token) <= 100 and token.isascii()
