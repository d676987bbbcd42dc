"""Ed25519 signing of config documents, and the public keys that verify them.

The private key comes from REDLINE_SIGNING_KEY (PEM text) or the PEM file
REDLINE_SIGNING_KEY_FILE; when REDLINE_SIGNING_KEY_GENERATE is on (development), a missing file
is created with a new key. Keys rotate: the files in REDLINE_SIGNING_PUBLISHED_KEYS (earlier
keys, public or private PEM) stay listed at GET /api/v1/signing-keys, but only the current key
signs. A key's id is its RFC 7638 JWK thumbprint, so it is the same wherever it is computed.

The signature travels in the `Config-Signature` header:
    kid="<key id>", alg="Ed25519", sig="<base64url signature of the exact body bytes>"
"""

import base64
import hashlib
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver

from audit.chain import canonical_json

ALGORITHM = "Ed25519"
SIGNATURE_HEADER = "Config-Signature"
_HEADER_PARAM = re.compile(r'(\w+)="([^"]*)"')
_SETTINGS = {
    "REDLINE_SIGNING_KEY",
    "REDLINE_SIGNING_KEY_FILE",
    "REDLINE_SIGNING_KEY_GENERATE",
    "REDLINE_SIGNING_PUBLISHED_KEYS",
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class PublicKey:
    kid: str
    key: Ed25519PublicKey

    @classmethod
    def of(cls, key: Ed25519PublicKey) -> "PublicKey":
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        thumbprint = canonical_json({"crv": "Ed25519", "kty": "OKP", "x": b64url(raw)})
        return cls(kid=b64url(hashlib.sha256(thumbprint).digest()), key=key)

    def jwk(self) -> dict:
        raw = self.key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {
            "kty": "OKP",
            "crv": "Ed25519",
            "x": b64url(raw),
            "kid": self.kid,
            "use": "sig",
            "alg": "EdDSA",
        }


@dataclass(frozen=True)
class Keyring:
    """The key that signs, and every key that is published (the signing one first)."""

    private: Ed25519PrivateKey
    current: PublicKey
    published: tuple[PublicKey, ...]

    def sign(self, body: bytes) -> str:
        """The Config-Signature header value for these exact body bytes."""
        signature = b64url(self.private.sign(body))
        return f'kid="{self.current.kid}", alg="{ALGORITHM}", sig="{signature}"'


def _load_private(pem: bytes, origin: str) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except ValueError as error:
        raise ImproperlyConfigured(f"{origin} is not a PEM private key: {error}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured(f"{origin} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def _load_public(path: Path) -> Ed25519PublicKey:
    pem = path.read_bytes()
    if b"PRIVATE KEY" in pem:
        return _load_private(pem, str(path)).public_key()
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ImproperlyConfigured(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def _generate(path: Path) -> Ed25519PrivateKey:
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    return key


def _private_key() -> Ed25519PrivateKey:
    if settings.REDLINE_SIGNING_KEY:
        return _load_private(settings.REDLINE_SIGNING_KEY.encode(), "REDLINE_SIGNING_KEY")
    path = Path(settings.REDLINE_SIGNING_KEY_FILE)
    if path.exists():
        return _load_private(path.read_bytes(), str(path))
    if settings.REDLINE_SIGNING_KEY_GENERATE:
        try:
            return _generate(path)
        except FileExistsError:  # another process generated it first
            return _load_private(path.read_bytes(), str(path))
    raise ImproperlyConfigured(
        f"no config signing key: set REDLINE_SIGNING_KEY to an Ed25519 private key (PEM) or "
        f"create {path} (openssl genpkey -algorithm ed25519 -out {path})"
    )


@cache
def keyring() -> Keyring:
    private = _private_key()
    current = PublicKey.of(private.public_key())
    published = [current]
    for name in settings.REDLINE_SIGNING_PUBLISHED_KEYS:
        key = PublicKey.of(_load_public(Path(name)))
        if key.kid not in {known.kid for known in published}:
            published.append(key)
    return Keyring(private=private, current=current, published=tuple(published))


@receiver(setting_changed)
def _forget_keys(*, setting, **kwargs):
    if setting in _SETTINGS:
        keyring.cache_clear()


def jwks() -> dict:
    """The published public keys as a JSON Web Key Set."""
    return {"keys": [key.jwk() for key in keyring().published]}


def signature_verify(body: bytes, header: str, jwk_set: dict) -> bool:
    """Does `header` carry a valid signature of `body` by one of the keys in `jwk_set`?"""
    params = dict(_HEADER_PARAM.findall(header or ""))
    if params.get("alg") != ALGORITHM or "kid" not in params or "sig" not in params:
        return False
    for jwk in jwk_set.get("keys", []):
        if jwk.get("kid") == params["kid"] and jwk.get("kty") == "OKP":
            try:
                key = Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"]))
                key.verify(b64url_decode(params["sig"]), body)
            except (InvalidSignature, ValueError):
                return False
            return True
    return False
