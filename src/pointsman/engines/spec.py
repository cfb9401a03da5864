"""What engines/ is handed: a resolved connection and nothing about users."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SERVER_DIALECTS = frozenset({"postgres", "redshift", "mysql", "mariadb"})
FILE_DIALECTS = frozenset({"sqlite", "duckdb"})


@dataclass(frozen=True)
class ConnectionSpec:
    """Everything an engine needs to open a pool for one connection.

    ``secrets`` holds decrypted secrets (``password`` and any dialect secret);
    it is excluded from ``repr`` so that a spec never prints a credential.
    ``credentials_version`` changes whenever host, port, database, user or a
    secret changes: a pool opened for an older version is drained and closed.
    """

    id: str
    name: str
    dialect: str
    host: str | None = None
    port: int | None = None
    database: str | None = None
    username: str | None = None
    default_schema: str | None = None
    query_timeout_seconds: int = 900
    connect_timeout_seconds: int = 10
    credentials_version: int = 1
    options: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def password(self) -> str | None:
        return self.secrets.get("password")

    def __str__(self) -> str:
        return f"connection {self.name!r} ({self.dialect})"


@dataclass(frozen=True)
class Column:
    """A result column: its name and an Arrow-compatible type name."""

    name: str
    type: str


class QueryResult:
    """A whole result: its columns and rows, or (read straight into Arrow,
    see :mod:`pointsman.engines.postgres_arrow`) an Arrow ``table`` whose
    rows are made Python values only if something asks for ``rows``."""

    __slots__ = ("_rows", "columns", "table", "truncated")

    def __init__(
        self,
        columns: list[Column],
        rows: list[tuple[Any, ...]] | None = None,
        truncated: bool = False,
        *,
        table: Any = None,
    ) -> None:
        self.columns = columns
        self.truncated = truncated
        self.table = table
        self._rows = rows if rows is not None or table is not None else []

    @property
    def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            values = [column.to_pylist() for column in self.table.columns]
            self._rows = list(zip(*values, strict=True))
        return self._rows

    @property
    def row_count(self) -> int:
        if self.table is not None:
            return int(self.table.num_rows)
        return len(self.rows)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QueryResult):
            return NotImplemented
        return (self.columns, self.rows, self.truncated) == (
            other.columns,
            other.rows,
            other.truncated,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"QueryResult(columns={self.columns!r}, rows={self.row_count}, "
            f"truncated={self.truncated!r})"
        )
