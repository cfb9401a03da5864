"""Request bodies shared by the API tests."""

from __future__ import annotations

from typing import Any


def connection_body(
    name: str = "Postgres (Development)", **changes: Any
) -> dict[str, Any]:
    """The walkthrough's create-connection body."""
    body: dict[str, Any] = {
        "dialect": "postgres",
        "name": name,
        "host": "postgres-dev.my-org.com",
        "port": 5432,
        "database": "dev",
        "username": "dbuser",
        "passwordUnencrypted": "mypassword",
        "includeSchemas": "public",
        "queryTimeoutSeconds": 900,
    }
    body.update(changes)
    return body
