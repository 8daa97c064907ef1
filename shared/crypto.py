"""Secrets at rest: integration credentials encrypted, API keys hashed, comparisons constant-time."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken


class CredentialsError(RuntimeError):
    """Stored credentials cannot be decrypted (wrong APPREFER_SECRET_KEY?)."""


def _fernet(secret_key: str) -> Fernet:
    # Any passphrase works: it is stretched to the 32 bytes Fernet needs. A rotated key makes
    # old ciphertexts unreadable, which decrypt_credentials reports instead of returning garbage.
    digest = hashlib.sha256(b"apprefer-credentials-v1:" + secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def encrypt_credentials(secret_key: str, credentials: dict[str, Any]) -> str:
    return _fernet(secret_key).encrypt(orjson.dumps(credentials)).decode()


def decrypt_credentials(secret_key: str, token: str) -> dict[str, Any]:
    try:
        return dict(orjson.loads(_fernet(secret_key).decrypt(token.encode())))
    except InvalidToken as exc:
        raise CredentialsError("credentials cannot be decrypted with APPREFER_SECRET_KEY") from exc


def new_api_key(mode: str) -> str:
    return f"pk_{mode}_{secrets.token_urlsafe(24)}"


def hash_api_key(key: str) -> str:
    # Keys are 192-bit random: a plain SHA-256 is enough, no slow KDF needed.
    return hashlib.sha256(key.encode()).hexdigest()


def token_id(token: str) -> str:
    """A short, stable id of a secret token (the admin token) to record who did what, never the token: the first
    12 hex digits of its SHA-256, as `printf %s "$APPREFER_ADMIN_TOKEN" | sha256sum | cut -c1-12` prints them."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def secrets_equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"
