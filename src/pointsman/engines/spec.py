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


@dataclass
class QueryResult:
    columns: list[Column]
    rows: list[tuple[Any, ...]]
    truncated: bool = False

    @property
    def row_count(self) -> int:
        return len(self.rows)
