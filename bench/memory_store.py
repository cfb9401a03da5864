"""Filling a fresh pointsman store with many environment connections, fast.

One transaction of bulk INSERTs into pointsman's own tables (secrets
encrypted with the server's key, as ``create_connection`` would): a base
routing on ``environment`` with N environment connections, each claiming the
value ``m<i>``, and users whose values point at distinct environments. The
store's configuration version moves, as on any configuration change.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, update

from pointsman.crypto import SecretBox
from pointsman.services.attributes import create_attribute
from pointsman.store import models
from pointsman.store.db import Store
from pointsman.store.models import utcnow


def _connection(
    box: SecretBox, name: str, database: str, host: str, port: int, user: str
) -> dict[str, Any]:
    now = utcnow()
    return {
        "id": str(uuid.uuid4()),
        "name": name,
        "dialect": "postgres",
        "host": host,
        "port": port,
        "database": database,
        "username": user,
        "include_schemas": "public",
        "query_timeout_seconds": 900,
        "connect_timeout_seconds": 10,
        "base_role": "QUERIER",
        "allow_branch_environments": False,
        "options": {},
        "secrets": box.encrypt({"password": "bench"}),
        "credentials_version": 1,
        "created_at": now,
        "updated_at": now,
    }


def populate(
    database_url: str,
    secret_key: str,
    *,
    environments: int,
    databases: list[str],
    users: int,
    host: str,
    port: int,
    pg_user: str,
) -> tuple[str, list[tuple[str, str]]]:
    """Returns the base id and (user id, expected connection id) per user;
    user ``j`` routes to environment ``j * environments // users``."""
    store = Store(database_url)
    box = SecretBox([secret_key])
    try:
        create_attribute(store, {"name": "environment", "label": "Environment"})
        base = _connection(box, "Base", databases[0], host, port, pg_user)
        base["environment_attribute"] = "environment"
        base["default_values"] = ["base"]
        targets = [
            _connection(
                box, f"Env {i}", databases[i % len(databases)], host, port, pg_user
            )
            for i in range(environments)
        ]
        start = utcnow()
        links = [
            {
                "id": str(uuid.uuid4()),
                "base_connection_id": base["id"],
                "environment_connection_id": target["id"],
                "values": [f"m{i}"],
                "created_at": start + timedelta(microseconds=i),
            }
            for i, target in enumerate(targets)
        ]
        claims = [
            {
                "base_connection_id": base["id"],
                "connection_environment_id": link["id"],
                "value": link["values"][0],
            }
            for link in links
        ]
        claims.append(
            {
                "base_connection_id": base["id"],
                "connection_environment_id": None,
                "value": "base",
            }
        )
        people, values, expected = [], [], []
        with store.read() as session:
            attribute_id = session.scalars(
                models.UserAttribute.__table__.select().with_only_columns(
                    models.UserAttribute.id
                )
            ).one()
        for j in range(users):
            user_id = str(uuid.uuid4())
            email = f"mem{j}@example.com"
            people.append(
                {
                    "id": user_id,
                    "membership_id": str(uuid.uuid4()),
                    "email": email,
                    "email_key": email,
                    "display_name": f"Memory User {j}",
                    "active": True,
                    "is_org_admin": False,
                    "created_at": start,
                    "updated_at": start,
                }
            )
            target = j * environments // users
            values.append(
                {
                    "user_id": user_id,
                    "attribute_id": attribute_id,
                    "values": [f"m{target}"],
                }
            )
            expected.append((user_id, targets[target]["id"]))
        # Core, not the ORM session: 30,000 rows without the audit trail's
        # per-row bookkeeping; the configuration version moves as store.write()
        # would move it.
        with store.engine.begin() as conn:
            conn.execute(insert(models.Connection.__table__), [base])
            conn.execute(insert(models.Connection.__table__), targets)
            conn.execute(insert(models.ConnectionEnvironment.__table__), links)
            conn.execute(insert(models.AttributeValueClaim.__table__), claims)
            conn.execute(insert(models.User.__table__), people)
            conn.execute(insert(models.UserAttributeValue.__table__), values)
            conn.execute(
                update(models.ConfigState)
                .where(models.ConfigState.id == 1)
                .values(version=models.ConfigState.version + 1)
            )
        return base["id"], expected
    finally:
        store.dispose()
