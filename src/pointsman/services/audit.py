"""Reading the audit trail (the events are written by ``store/audit.py``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from pointsman.errors import ValidationFailed
from pointsman.services.paging import Page, parse_uuid
from pointsman.store import models
from pointsman.store.db import Store

Event = models.AuditEvent


def event_record(row: models.AuditEvent) -> dict[str, Any]:
    return {
        "id": row.id,
        "at": row.at,
        "actorUserId": row.actor_user_id,
        "tokenId": row.token_id,
        "action": row.action,
        "resourceType": row.resource_type,
        "resourceId": row.resource_id,
        "before": row.before,
        "after": row.after,
    }


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationFailed("since", "Expected an ISO 8601 timestamp") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def list_events(store: Store, params: dict[str, str]) -> dict[str, Any]:
    """Events, newest first, filtered by resource, actor and time."""
    page = Page.from_params(params, sort_fields=("at",), default_sort="at")
    query = select(Event)
    if params.get("action"):
        query = query.where(Event.action == params["action"])
    if params.get("resourceType"):
        query = query.where(Event.resource_type == params["resourceType"])
    if params.get("resourceId"):
        query = query.where(Event.resource_id == params["resourceId"])
    if params.get("actorUserId"):
        actor = parse_uuid(params["actorUserId"], "actorUserId")
        query = query.where(Event.actor_user_id == actor)
    since = _since(params.get("since"))
    if since is not None:
        query = query.where(Event.at >= since)

    with store.read() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = page.apply(session, query, Event.at, Event.id)
        return page.result([event_record(row) for row in rows], total)
