"""Source keys: minting, hashing, and signing in with one (the bearer path of access.deps)."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from server.audit import service as audit
from server.db import utcnow
from server.domain import DomainError
from server.sources.models import KEY_PREFIX, Source
from server.users.models import User

# Characters of the random part shown in lists, so an admin can tell two keys apart.
HINT_CHARS = 4


class KeyRefused(DomainError):
    """401 for a source key that does not sign in; the detail says why."""

    def __init__(self, detail: str) -> None:
        super().__init__(401, detail)
        self.headers = {"WWW-Authenticate": "Bearer"}


def is_source_key(token: str) -> bool:
    """True for a bearer token that claims to be a source key."""
    return token.startswith(KEY_PREFIX)


def new_key() -> str:
    """A fresh key: the prefix and 32 random bytes, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    """What is stored: the key's SHA-256 (the key has 256 random bits, no slow hash needed)."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_hint(key: str) -> str:
    """The prefix and the first few random characters, e.g. 'loasrc_Ab3d'."""
    return key[: len(KEY_PREFIX) + HINT_CHARS]


def _record(db: Session, source: Source, user: User | None, action: str, **details: str) -> None:
    """One audit entry for a use of the key, committed at once (see sign_in_with_key)."""
    audit.record(
        db,
        actor=None,
        action=action,
        object_type="source",
        object_id=source.id,
        org_unit_id=source.org_unit_id,
        summary=f"{details['method']} {details['path']}",
        details={**details, "key_hint": source.key_hint},
        username=user.username if user else f"source-{source.id}",
        user_id=source.user_id,
        ip=details["ip"],
    )
    db.commit()


def sign_in_with_key(db: Session, *, key: str, method: str, path: str, ip: str) -> User:
    """The service user of a live source key; every use is audited and committed at once.

    Looked up by the key's hash, so no comparison runs over a secret. Committed here, not with
    the route: a use that the route then refuses (403, 422) stays in the audit log, and so
    does a revoked key's attempt (401).
    """
    source = db.scalar(select(Source).where(Source.key_hash == key_hash(key)))
    if source is None:
        raise KeyRefused(
            "Unknown source key (a rotated key stops working at once). "
            "Ask the administrator for the current key."
        )
    user = db.get(User, source.user_id)
    where = {"method": method, "path": path, "ip": ip}
    if source.revoked_at is not None:
        _record(db, source, user, "source.key_refused", reason="revoked", **where)
        raise KeyRefused(
            "This source key was revoked; the source may no longer send. "
            "Ask the administrator to register it again."
        )
    if user is None or not user.is_active:
        _record(db, source, user, "source.key_refused", reason="account disabled", **where)
        raise KeyRefused("This source's account is disabled. Ask the administrator.")
    source.last_used_at = utcnow()
    _record(db, source, user, "source.key_used", **where)
    return user
