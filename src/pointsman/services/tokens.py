"""Organization API keys and personal access tokens."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from pointsman.errors import BadRequest, NotFound, ValidationFailed
from pointsman.services.actors import ORG_PREFIX, PAT_PREFIX, hash_token
from pointsman.services.paging import Page, parse_uuid
from pointsman.store import models
from pointsman.store.db import Store

KINDS = ("organization", "personal")
SORT_FIELDS = {"createdAt": models.ApiToken.created_at, "name": models.ApiToken.name}


def token_record(row: models.ApiToken) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "type": row.kind,
        "enabled": row.enabled,
        "membershipId": None,
        "createdAt": row.created_at,
    }


def _record(session: Session, row: models.ApiToken) -> dict[str, Any]:
    record = token_record(row)
    if row.kind == "personal" and row.user_id is not None:
        user = session.get(models.User, row.user_id)
        record["membershipId"] = user.membership_id if user else None
    return record


def create_token(store: Store, *, name: str, kind: str, user_id: str) -> dict[str, Any]:
    """A new token; the returned ``token`` is the only copy there will be."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationFailed("name", "Required")
    if len(name) > 256:
        raise ValidationFailed("name", "Must be at most 256 characters")
    if kind not in KINDS:
        raise ValidationFailed(
            "type", "Invalid enum value. Expected 'organization' | 'personal'"
        )
    prefix = ORG_PREFIX if kind == "organization" else PAT_PREFIX
    token = prefix + secrets.token_urlsafe(32)
    with store.write() as session:
        if session.get(models.User, user_id) is None:
            raise NotFound("User not found")
        row = models.ApiToken(
            name=name.strip(), kind=kind, token_hash=hash_token(token), user_id=user_id
        )
        session.add(row)
        session.flush()
        return {"id": row.id, "name": row.name, "type": kind, "token": token}


def list_tokens(store: Store, params: dict[str, str]) -> dict[str, Any]:
    page = Page.from_params(
        params, sort_fields=tuple(SORT_FIELDS), default_sort="createdAt"
    )
    kind = params.get("type")
    if kind is not None and kind not in KINDS:
        raise ValidationFailed(
            "type", "Invalid enum value. Expected 'organization' | 'personal'"
        )
    with store.read() as session:
        query = select(models.ApiToken)
        if kind:
            query = query.where(models.ApiToken.kind == kind)
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = page.apply(
            session, query, SORT_FIELDS[page.sort_field], models.ApiToken.id
        )
        return page.result([_record(session, row) for row in rows], total)


def get_token(store: Store, token_id: str) -> dict[str, Any]:
    parse_uuid(token_id, "id")
    with store.read() as session:
        row = session.get(models.ApiToken, token_id)
        if row is None:
            raise NotFound("API key not found")
        return _record(session, row)


def set_enabled(store: Store, token_id: str, enabled: Any) -> dict[str, Any]:
    parse_uuid(token_id, "id")
    if not isinstance(enabled, bool):
        raise ValidationFailed("enabled", "Required")
    with store.write() as session:
        row = session.get(models.ApiToken, token_id)
        if row is None:
            raise NotFound("API key not found")
        if row.kind != "organization":
            raise BadRequest("Only organization API keys can be disabled")
        row.enabled = enabled
        session.flush()
        return _record(session, row)


def delete_token(store: Store, token_id: str) -> dict[str, Any]:
    parse_uuid(token_id, "id")
    with store.write() as session:
        row = session.get(models.ApiToken, token_id)
        if row is None:
            raise NotFound("API key not found")
        session.delete(row)
    return {"success": True, "message": f"API key {token_id} revoked"}
