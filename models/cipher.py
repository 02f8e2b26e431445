"""Encryption of tokens at rest: Fernet with key rotation (MultiFernet)."""

from __future__ import annotations

from cryptography.fernet import Fernet, MultiFernet


class Cipher:
    """Fernet encryption with key rotation: the first key encrypts, all keys decrypt."""

    def __init__(self, keys: list[str]):
        if not keys:
            raise ValueError("TOKEN_ENCRYPTION_KEY holds no key")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, value: str | None) -> str | None:
        """Encrypt a token (None stays None)."""
        if value is None:
            return None
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, value: str | None) -> str | None:
        """Decrypt a token; raises InvalidToken when no configured key fits."""
        if value is None:
            return None
        return self._fernet.decrypt(value.encode("ascii")).decode("utf-8")

    def rotate(self, value: str | None) -> str | None:
        """Re-encrypt with the newest key."""
        if value is None:
            return None
        return self._fernet.rotate(value.encode("ascii")).decode("ascii")
