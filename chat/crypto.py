"""Encryption of API keys at rest with MultiFernet (FIELD_ENCRYPTION_KEYS, newest first).

Decryption failure raises: a ciphertext must never travel onward as if it were the key.
"""

from __future__ import annotations

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any of FIELD_ENCRYPTION_KEYS."""


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k) for k in keys])


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plain: str) -> str:
    return fernet().encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return fernet().decrypt(token.encode()).decode()
    except (InvalidToken, ValueError):
        raise DecryptionError(
            "Stored API key cannot be decrypted with FIELD_ENCRYPTION_KEYS (was a key removed?)"
        ) from None


def rotate(token: str) -> str:
    """Re-encrypt under the newest key (keeps the original timestamp)."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("Stored API key cannot be decrypted with FIELD_ENCRYPTION_KEYS") from None
