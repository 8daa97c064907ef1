"""shared.crypto: credentials encrypted at rest, API keys hashed, constant-time comparison."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from shared.crypto import (
    CredentialsError,
    decrypt_credentials,
    encrypt_credentials,
    hash_api_key,
    new_api_key,
    new_id,
    secrets_equal,
)

CREDS = {"access_token": "EAAB-super-secret-token", "pixel_id": "123456789", "nested": {"a": [1, 2.5, None]},
         "unicode": "pässwörd ✓"}


def test_round_trip() -> None:
    token = encrypt_credentials("key-1", CREDS)
    assert decrypt_credentials("key-1", token) == CREDS
    assert decrypt_credentials("", encrypt_credentials("", {})) == {}


def test_ciphertext_hides_the_plaintext() -> None:
    token = encrypt_credentials("key-1", CREDS)
    decoded = base64.urlsafe_b64decode(token)
    for secret in ("EAAB-super-secret-token", "access_token", "123456789"):
        assert secret not in token and secret.encode() not in decoded
    assert encrypt_credentials("key-1", CREDS) != token  # random IV


@pytest.mark.parametrize("wrong", ["key-2", "key-1 ", "KEY-1", ""])
def test_wrong_key(wrong: str) -> None:
    token = encrypt_credentials("key-1", CREDS)
    with pytest.raises(CredentialsError):
        decrypt_credentials(wrong, token)


@pytest.mark.parametrize("garbage", ["", "not a token", "gAAAAA", "é"])
def test_garbage_token(garbage: str) -> None:
    with pytest.raises(CredentialsError):
        decrypt_credentials("key-1", garbage)


def test_tampered_token() -> None:
    raw = bytearray(base64.urlsafe_b64decode(encrypt_credentials("key-1", CREDS)))
    raw[-40] ^= 1
    with pytest.raises(CredentialsError):
        decrypt_credentials("key-1", base64.urlsafe_b64encode(bytes(raw)).decode())


@pytest.mark.parametrize("mode", ["live", "test"])
def test_new_api_key(mode: str) -> None:
    keys = {new_api_key(mode) for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert re.fullmatch(rf"pk_{mode}_[A-Za-z0-9_-]{{32}}", key)


def test_hash_api_key() -> None:
    key = new_api_key("live")
    digest = hash_api_key(key)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == hash_api_key(key) == hashlib.sha256(key.encode()).hexdigest()
    assert key not in digest
    assert hash_api_key(key + "x") != digest
    assert len({hash_api_key(new_api_key("test")) for _ in range(50)}) == 50


def test_secrets_equal() -> None:
    assert secrets_equal("Bearer abc", "Bearer abc")
    assert secrets_equal("", "")
    assert secrets_equal("ünï", "ünï")
    assert not secrets_equal("Bearer abc", "Bearer abd")
    assert not secrets_equal("Bearer abc", "Bearer abc ")
    assert not secrets_equal("", "x")
    assert not secrets_equal("ünï", "uni")


def test_new_id() -> None:
    ids = {new_id("app") for _ in range(100)}
    assert len(ids) == 100 and all(re.fullmatch(r"app_[0-9a-f]{16}", i) for i in ids)
