"""Bearer tokens of the platform clients of the HTTP API (contract section 8).

A token is 32 random bytes (``secrets.token_urlsafe``), printed once by
``certpipeline tokens create NAME`` and never stored: the store keeps its
HMAC-SHA256 under a server key, the standard keyed hash for a high-entropy
secret (a password hash's deliberate slowness buys nothing against 256 random
bits, and would cost every API call tens of milliseconds). The store
``pipeline/api_tokens.json`` and the key ``pipeline/api_token.key`` are mode
0600; the store is replaced atomically under a lock, and re-read whenever it
changes, so a revocation holds from the next call of a running server.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from certpipeline.warehouse import exclusive_lock

TOKEN_PREFIX = "cpt_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9._-]{1,64}")


class TokenError(ValueError):
    """A token command that cannot be done, with a reason a person can act on."""


@dataclass(frozen=True)
class TokenEntry:
    name: str
    created_at: str
    revoked_at: str | None


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` as ``path``, mode 0600, under a temporary name renamed into place."""
    staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(staging, path)


class TokenStore:
    def __init__(self, directory: Path):
        self.directory = directory
        self.store_path = directory / "api_tokens.json"
        self.key_path = directory / "api_token.key"
        self._cache: tuple[tuple, dict[str, str]] | None = None  # (store file identity, digest -> name)
        self._cache_lock = threading.Lock()

    # -- the store -----------------------------------------------------------------

    def _read(self) -> list[dict]:
        try:
            return json.loads(self.store_path.read_text(encoding="utf-8"))["tokens"]
        except FileNotFoundError:
            return []

    def _key(self, create: bool) -> bytes | None:
        if not self.key_path.exists():
            if not create:
                return None
            self.directory.mkdir(parents=True, exist_ok=True)
            _write_private(self.key_path, secrets.token_bytes(32))
        return self.key_path.read_bytes()

    def _digest(self, key: bytes, token: str) -> str:
        return hmac.new(key, token.encode("utf-8"), hashlib.sha256).hexdigest()

    def create(self, name: str, now: dt.datetime | None = None) -> str:
        """A new token for client ``name``; returns it (the only time it is shown)."""
        if not NAME_PATTERN.fullmatch(name):
            raise TokenError(f"token names are 1 to 64 of A-Z a-z 0-9 . _ -, not {name!r}")
        self.directory.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.directory / "api_tokens.lock"):
            key = self._key(create=True)
            tokens = self._read()
            if any(t["name"] == name and t["revoked_at"] is None for t in tokens):
                raise TokenError(f"a token named {name!r} is active; revoke it first")
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            tokens.append({"name": name, "hmac_sha256": self._digest(key, token),
                           "created_at": (now or dt.datetime.now(dt.timezone.utc)).isoformat(),
                           "revoked_at": None})
            _write_private(self.store_path, json.dumps({"tokens": tokens}, indent=1).encode("utf-8"))
        return token

    def revoke(self, name: str, now: dt.datetime | None = None) -> None:
        with exclusive_lock(self.directory / "api_tokens.lock"):
            tokens = self._read()
            active = [t for t in tokens if t["name"] == name and t["revoked_at"] is None]
            if not active:
                raise TokenError(f"no active token named {name!r}")
            for entry in active:
                entry["revoked_at"] = (now or dt.datetime.now(dt.timezone.utc)).isoformat()
            _write_private(self.store_path, json.dumps({"tokens": tokens}, indent=1).encode("utf-8"))

    def entries(self) -> list[TokenEntry]:
        return [TokenEntry(t["name"], t["created_at"], t["revoked_at"]) for t in self._read()]

    # -- checking a bearer token -----------------------------------------------------

    def client_of(self, token: str) -> str | None:
        """The client name of an active token, or None."""
        active = self._active_digests()
        key = self._key(create=False)
        if not active or key is None:
            return None
        return active.get(self._digest(key, token))

    def _active_digests(self) -> dict[str, str]:
        try:
            info = self.store_path.stat()
        except FileNotFoundError:
            return {}
        identity = (info.st_ino, info.st_mtime_ns, info.st_size)
        with self._cache_lock:
            if self._cache is not None and self._cache[0] == identity:
                return self._cache[1]
        active = {t["hmac_sha256"]: t["name"] for t in self._read() if t["revoked_at"] is None}
        with self._cache_lock:
            self._cache = (identity, active)
        return active
