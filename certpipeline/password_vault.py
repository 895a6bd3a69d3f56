"""Report passwords at rest: encrypted, and only until their request ends.

A password is encrypted with Fernet (AES-128-CBC + HMAC, from the well-kept
``cryptography`` package rather than hand-rolled crypto) under a key from
``CERTPIPELINE_SECRET_KEY`` or, when that is unset, a key file created with
mode 0600 beside the request queue. Only the ciphertext is stored; it is wiped
when the request reaches Success or Failure. Nothing else (Dagster run config,
tags, logs, the published warehouse) ever carries the password.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

KEY_ENVIRONMENT_VARIABLE = "CERTPIPELINE_SECRET_KEY"


class PasswordVault:
    def __init__(self, key_file: Path):
        self._key_file = key_file

    def _fernet(self) -> Fernet:
        key = os.environ.get(KEY_ENVIRONMENT_VARIABLE)
        if not key:
            if not self._key_file.exists():
                self._key_file.parent.mkdir(parents=True, exist_ok=True)
                descriptor = os.open(self._key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(Fernet.generate_key())
            key = self._key_file.read_bytes().strip()
        return Fernet(key)

    def seal(self, password: str) -> bytes:
        return self._fernet().encrypt(password.encode("utf-8"))

    def open(self, ciphertext: bytes) -> str:
        try:
            return self._fernet().decrypt(ciphertext).decode("utf-8")
        except InvalidToken as error:
            raise ValueError("the stored report password cannot be decrypted with the current key") from error
