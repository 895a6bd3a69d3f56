"""Report passwords at rest: encrypted, and only until their request ends.

A password is encrypted with Fernet (AES-128-CBC + HMAC, from the well-kept
``cryptography`` package rather than hand-rolled crypto) under a key from
``CERTPIPELINE_SECRET_KEY`` or, when that is unset, a key file:
``CERTPIPELINE_SECRET_KEY_FILE``, by default
``$XDG_CONFIG_HOME/certpipeline/secret.key`` (``~/.config/...``), created
with mode 0600 in a 0700 folder on first use. The key never lives in the data
directory beside the ciphertexts it opens: a copy or backup of the data
directory alone opens nothing. Only the ciphertext is stored; it is wiped
when the request reaches Success or Failure. Nothing else (Dagster run
config, tags, logs, the published warehouse) ever carries the password.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from certpipeline.settings import secret_key


class PasswordVault:
    def __init__(self, key_file: Path, legacy_key_file: Path | None = None):
        self._key_file = key_file
        # Where earlier versions kept the key (inside the data directory); moved
        # out on first use so passwords sealed with it still open.
        self._legacy_key_file = legacy_key_file

    @property
    def key_file(self) -> Path:
        return self._key_file

    def _fernet(self) -> Fernet:
        key = secret_key()
        if not key:
            if not self._key_file.exists():
                legacy = self._legacy_key_file
                self._create_key_file(legacy.read_bytes() if legacy and legacy.is_file() else Fernet.generate_key())
                if legacy and legacy.is_file():
                    legacy.unlink()
            key = self._key_file.read_bytes().strip()
        return Fernet(key)

    def _create_key_file(self, key: bytes) -> None:
        self._key_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(self._key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key)

    def seal(self, password: str) -> bytes:
        return self._fernet().encrypt(password.encode("utf-8"))

    def open(self, ciphertext: bytes) -> str:
        try:
            return self._fernet().decrypt(ciphertext).decode("utf-8")
        except InvalidToken as error:
            raise ValueError("the stored report password cannot be decrypted with the current key") from error
