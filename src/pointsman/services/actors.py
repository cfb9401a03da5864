"""Who is calling: the token and the user it acts as."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pointsman.errors import Unauthorized
from pointsman.routing.snapshot import Snapshot, TokenInfo, UserInfo

ORG_PREFIX = "psm_org_"
PAT_PREFIX = "psm_pat_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Actor:
    """The caller: an organization key (acting as the admin who created it)
    or a personal access token (acting as its owner)."""

    user: UserInfo
    token: TokenInfo

    @property
    def is_org_key(self) -> bool:
        return self.token.kind == "organization"

    @property
    def key_scope(self) -> str:
        return "organization" if self.is_org_key else "user"

    @property
    def is_org_admin(self) -> bool:
        return self.is_org_key or self.user.is_org_admin


def authenticate(snapshot: Snapshot, bearer: str | None) -> Actor:
    """The actor for a bearer token, or 401 for anything else.

    The token is found by its SHA-256 hash, so the secret itself is never
    compared byte by byte against stored material."""
    if not bearer or not bearer.startswith((ORG_PREFIX, PAT_PREFIX)):
        raise Unauthorized()
    token = snapshot.tokens_by_hash.get(hash_token(bearer))
    if token is None or not token.enabled or token.user_id is None:
        raise Unauthorized()
    user = snapshot.users.get(token.user_id)
    if user is None or not user.active:
        raise Unauthorized()
    return Actor(user=user, token=token)
