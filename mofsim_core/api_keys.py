"""API keys: random tokens ``msk_<id>_<secret>`` of which only a salted hash is kept.

Only a salted SHA-256 of the secret is stored (the secret carries 256 random bits, so a
slow hash would add nothing), in a JSON file written atomically and re-read when it
changes, so ``mofsim keys create`` takes effect on a running server.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mofsim_core.logs import audit
from spool.errors import StorageError, ValidationError
from spool.events import iso_now
from spool.layout import SpoolPaths

KEY_PREFIX = "msk_"
_ID_LEN = 12


def _hash(salt: str, secret: str) -> str:
    return hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()


def public_view(entry: dict[str, Any]) -> dict[str, Any]:
    """What may be shown of a key: never its hash or salt."""
    return {
        "id": entry["id"],
        "name": entry.get("name"),
        "admin": bool(entry.get("admin")),
        "prefix": KEY_PREFIX + entry["id"],
        "created_at": entry.get("created_at"),
        "revoked_at": entry.get("revoked_at"),
    }


class KeyStore:
    """The hashed keys in one JSON file (``{"keys": [...]}``)."""

    def __init__(self, path: Path, spool_paths: SpoolPaths | None = None) -> None:
        self.path = Path(path)
        self.spool_paths = spool_paths
        self._stamp: tuple[int, int] | None = None
        self._keys: list[dict[str, Any]] = []

    # -- reading (cached until the file changes)
    def _load(self) -> list[dict[str, Any]]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._stamp, self._keys = None, []
            return self._keys
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp != self._stamp:
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError) as exc:
                # Failing closed: an unreadable key file must not open the server.
                raise StorageError(f"API key file {self.path.name} is unreadable: {exc}") from exc
            keys = data.get("keys") if isinstance(data, dict) else None
            self._keys = [k for k in keys or [] if isinstance(k, dict) and "id" in k]
            self._stamp = stamp
        return self._keys

    def entries(self) -> list[dict[str, Any]]:
        return [public_view(k) for k in self._load()]

    def active(self) -> list[dict[str, Any]]:
        return [k for k in self._load() if not k.get("revoked_at")]

    def has_keys(self) -> bool:
        return bool(self.active())

    def verify(self, token: str) -> dict[str, Any] | None:
        """The key's public view when ``token`` is an active key, else None."""
        if not token.startswith(KEY_PREFIX) or len(token) < len(KEY_PREFIX) + _ID_LEN + 2:
            return None
        key_id = token[len(KEY_PREFIX) : len(KEY_PREFIX) + _ID_LEN]
        if token[len(KEY_PREFIX) + _ID_LEN] != "_":
            return None
        secret = token[len(KEY_PREFIX) + _ID_LEN + 1 :]
        for entry in self.active():
            if entry["id"] == key_id:
                expected = str(entry.get("hash", ""))
                try:
                    actual = _hash(str(entry.get("salt", "")), secret)
                except ValueError:
                    return None
                return public_view(entry) if hmac.compare_digest(actual, expected) else None
        return None

    # -- writing (read-modify-write under a lock file)
    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[dict[str, Any]]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._stamp = None
            keys = [dict(k) for k in self._load()]
            yield keys
            self._write(keys)

    def _write(self, keys: list[dict[str, Any]]) -> None:
        text = json.dumps({"keys": keys}, indent=2, sort_keys=True)
        paths = self.spool_paths
        if paths is not None and self.path.parent.resolve().is_relative_to(paths.root):
            from spool.transitions import atomic_write

            atomic_write(paths, self.path, text)
        else:
            _atomic_write_beside(self.path, text)
        os.chmod(self.path, 0o600)
        self._stamp = None

    def create(
        self, name: str | None = None, admin: bool = False, *, actor: str = "local"
    ) -> tuple[dict[str, Any], str]:
        """A new key: its public view and the token, which is never stored or shown again.
        Audited as done by ``actor``."""
        if name is not None and len(name) > 100:
            raise ValidationError("key name must be at most 100 characters", field="name")
        if name is not None:
            # Shown in terminals and logs: what cannot be printed is kept, escaped.
            name = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in name)
        key_id = secrets.token_hex(_ID_LEN // 2)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_hex(16)
        entry = {
            "id": key_id,
            "name": name,
            "admin": bool(admin),
            "salt": salt,
            "hash": _hash(salt, secret),
            "created_at": iso_now(),
            "revoked_at": None,
        }
        with self._locked() as keys:
            keys.append(entry)
        audit("key.created", key_id=key_id, name=name, admin=bool(admin), by=actor)
        return public_view(entry), f"{KEY_PREFIX}{key_id}_{secret}"

    def revoke(self, key_id: str, *, actor: str = "local") -> dict[str, Any]:
        """Audited as done by ``actor`` (a key already revoked stays as it was)."""
        key_id = key_id.removeprefix(KEY_PREFIX)
        with self._locked() as keys:
            for entry in keys:
                if entry["id"] == key_id:
                    was = entry.get("revoked_at")
                    if not was:
                        entry["revoked_at"] = iso_now()
                    view = public_view(entry)
                    break
            else:
                view = None
        if view is not None:
            audit("key.revoked", key_id=key_id, already=bool(was), by=actor)
            return view
        from spool.errors import NotFoundError

        raise NotFoundError(f"no API key with id {key_id!r}", field="key_id")


def _atomic_write_beside(dest: Path, text: str) -> None:
    """A key file outside the spool: temporary file in the same directory, then replace."""
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, text.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise StorageError(f"cannot write {dest.name}: {exc.strerror or exc}") from exc
