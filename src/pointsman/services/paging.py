"""Cursor paging (``pageInfo`` style) and id parsing shared by services."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session

from pointsman.errors import ValidationFailed


def parse_uuid(value: Any, field: str, message: str = "Invalid uuid") -> str:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        raise ValidationFailed(field, message) from None


def is_uuid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        return False
    return True


@dataclass(frozen=True)
class Page:
    """A page request: the cursor is the id of the first record of the page,
    as handed out in ``nextCursor``."""

    cursor: str | None
    page_size: int
    sort_field: str
    descending: bool

    @classmethod
    def from_params(
        cls,
        params: dict[str, str],
        *,
        sort_fields: tuple[str, ...],
        default_sort: str,
        default_descending: bool = True,
    ) -> Page:
        size_text = params.get("pageSize", "20")
        if not size_text.isdigit() or not 1 <= int(size_text) <= 100:
            raise ValidationFailed("pageSize", "Must be a whole number from 1 to 100")
        sort_field = params.get("sortField", default_sort)
        if sort_field not in sort_fields:
            expected = " | ".join(f"'{name}'" for name in sort_fields)
            raise ValidationFailed(
                "sortField",
                f"Invalid enum value. Expected {expected}, received '{sort_field}'",
            )
        direction = params.get("sortDirection", "desc" if default_descending else "asc")
        if direction not in ("asc", "desc"):
            raise ValidationFailed(
                "sortDirection",
                f"Invalid enum value. Expected 'asc' | 'desc', received '{direction}'",
            )
        cursor = params.get("cursor") or None
        if cursor is not None:
            cursor = parse_uuid(cursor, "cursor")
        return cls(cursor, int(size_text), sort_field, direction == "desc")

    def apply(
        self,
        session: Session,
        query: Select[Any],
        sort_column: InstrumentedAttribute[Any],
        id_column: InstrumentedAttribute[Any],
    ) -> list[Any]:
        """Rows of this page plus one look-ahead row (kept in ``self``'s result)."""
        if self.cursor is not None:
            anchor = session.execute(
                select(sort_column).where(id_column == self.cursor)
            ).scalar_one_or_none()
            if anchor is None:
                raise ValidationFailed("cursor", "Unknown cursor")
            if self.descending:
                after = or_(
                    sort_column < anchor,
                    and_(sort_column == anchor, id_column <= self.cursor),
                )
            else:
                after = or_(
                    sort_column > anchor,
                    and_(sort_column == anchor, id_column >= self.cursor),
                )
            query = query.where(after)
        order = (
            (sort_column.desc(), id_column.desc())
            if self.descending
            else (sort_column.asc(), id_column.asc())
        )
        return list(session.scalars(query.order_by(*order).limit(self.page_size + 1)))

    def result(self, records: list[dict[str, Any]], total: int) -> dict[str, Any]:
        has_next = len(records) > self.page_size
        return {
            "pageInfo": {
                "hasNextPage": has_next,
                "nextCursor": records[self.page_size]["id"] if has_next else None,
                "pageSize": self.page_size,
                "totalRecords": total,
            },
            "records": records[: self.page_size],
        }
