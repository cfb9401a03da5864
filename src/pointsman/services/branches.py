"""Branches (spec §6): a named pin of one environment of a base.

A query naming a branch goes to the pinned environment when the base allows
branch environments; the resolver decides that, so a branch may be created
on any base and takes effect once the base's flag is switched on. A branch
outlives its link: if the link goes, the resolver skips the branch and says
why.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from sqlalchemy import select

from pointsman.errors import NotFound, ValidationFailed
from pointsman.services.paging import is_uuid
from pointsman.services.switches import link_of_base
from pointsman.store import models
from pointsman.store.db import Store

MAX_NAME_LENGTH = 256

Branch = models.Branch


def branch_record(row: Branch) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "baseConnectionId": row.base_connection_id,
        "connectionEnvironmentId": row.connection_environment_id,
        "createdAt": row.created_at,
    }


def parse_base_id(raw: Any, field: str = "baseConnectionId") -> str:
    if raw is None or raw == "":
        raise ValidationFailed(field, "Required")
    if not is_uuid(raw):
        raise ValidationFailed(field, "Invalid uuid")
    return str(raw).lower()


def _name(raw: Any) -> str:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise ValidationFailed("name", "Required")
    if not isinstance(raw, str):
        raise ValidationFailed("name", "Expected a string")
    if len(raw.strip()) > MAX_NAME_LENGTH:
        raise ValidationFailed("name", f"Must be at most {MAX_NAME_LENGTH} characters")
    return raw.strip()


def create_branch(store: Store, base_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """``base_id`` is live and the caller may administer it (checked by the
    handler); the environment must be one of its links."""
    name = _name(body.get("name"))
    key = body.get("connectionEnvironmentId")
    if key is None or key == "":
        raise ValidationFailed("connectionEnvironmentId", "Required")
    with store.write() as session:
        link_id = link_of_base(session, base_id, key, "connectionEnvironmentId")
        row = Branch(
            name=name, base_connection_id=base_id, connection_environment_id=link_id
        )
        session.add(row)
        session.flush()
        return branch_record(row)


def list_branches(
    store: Store, base_id: str | None, visible_bases: Container[str] | None
) -> dict[str, Any]:
    """Oldest first; ``visible_bases`` None means every branch."""
    with store.read() as session:
        query = select(Branch).order_by(Branch.created_at, Branch.id)
        if base_id is not None:
            query = query.where(Branch.base_connection_id == base_id)
        rows = [
            row
            for row in session.scalars(query)
            if visible_bases is None or row.base_connection_id in visible_bases
        ]
    return {"branches": [branch_record(row) for row in rows]}


def delete_branch(store: Store, branch_id: str) -> None:
    with store.write() as session:
        row = session.get(Branch, branch_id)
        if row is None:
            raise NotFound(f"Branch {branch_id} not found")
        session.delete(row)
