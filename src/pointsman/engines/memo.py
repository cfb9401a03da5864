"""A bounded memo of what was learnt about statements, by their text."""

from __future__ import annotations

from typing import Generic, TypeVar

V = TypeVar("V")

# Statements remembered per memo (per pool): the oldest is forgotten first.
REMEMBERED = 256


class Memo(Generic[V]):
    """The last :data:`REMEMBERED` answers, each about one statement."""

    def __init__(self) -> None:
        self._known: dict[str, V] = {}

    def __contains__(self, sql: str) -> bool:
        return sql in self._known

    def get(self, sql: str) -> V | None:
        return self._known.get(sql)

    def set(self, sql: str, value: V) -> None:
        if sql not in self._known and len(self._known) >= REMEMBERED:
            self._known.pop(next(iter(self._known)))
        self._known[sql] = value

    def forget(self, sql: str) -> None:
        self._known.pop(sql, None)
