"""Connections: create, read, change, archive."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from pointsman.crypto import SecretBox
from pointsman.engines import limits
from pointsman.engines.spec import ConnectionSpec
from pointsman.errors import (
    BadRequest,
    Gone,
    NotFound,
    ValidationFailed,
)
from pointsman.policy import canonical_role
from pointsman.routing.snapshot import SYSTEM_ATTRIBUTES
from pointsman.services.dialects import OPTION_FIELDS, RULES, SECRET_FIELDS
from pointsman.services.paging import is_uuid
from pointsman.services.values import normalise, split_list
from pointsman.store import models
from pointsman.store.db import Store
from pointsman.store.models import utcnow

LIST_PARAMS = {
    "name",
    "database",
    "dialect",
    "sortField",
    "sortDirection",
    "includeDeleted",
}
SORT_FIELDS = ("database", "dialect", "name")
FLAT_NAME = "userAttributeNameForConnectionEnvironments"
FLAT_VALUES = "userAttributeValuesForDefaultEnvironment"
EDITABLE = {
    "name": "name",
    "host": "host",
    "port": "port",
    "database": "database",
    "username": "username",
    "defaultSchema": "default_schema",
    "includeSchemas": "include_schemas",
    "queryTimeoutSeconds": "query_timeout_seconds",
    "connectTimeoutSeconds": "connect_timeout_seconds",
    "allowBranchConnectionEnvironments": "allow_branch_environments",
}
# Request fields whose change means a pool must be reopened.
CREDENTIAL_FIELDS = {
    "host",
    "port",
    "database",
    "username",
    "defaultSchema",
    *SECRET_FIELDS,
}
# Columns whose change means a pool must be reopened.
CREDENTIAL_COLUMNS = {"host", "port", "database", "username", "default_schema"}


def connection_record(row: models.Connection) -> dict[str, Any]:
    record: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "dialect": row.dialect,
        "host": row.host,
        "port": row.port,
        "database": row.database,
        "username": row.username,
        "defaultSchema": row.default_schema,
        "includeSchemas": row.include_schemas,
        "queryTimeoutSeconds": row.query_timeout_seconds,
        "connectTimeoutSeconds": row.connect_timeout_seconds,
        "baseRole": row.base_role,
        "deletedAt": row.deleted_at,
        "createdAt": row.created_at,
        "updatedAt": row.updated_at,
        FLAT_NAME: row.environment_attribute,
        FLAT_VALUES: list(row.default_values) if row.default_values else None,
        "allowBranchConnectionEnvironments": row.allow_branch_environments,
        "branchConnectionEnvironmentOverridesUserAttr": row.allow_branch_environments,
    }
    for key, value in (row.options or {}).items():
        record.setdefault(key, value)
    return record


# -- validation ---------------------------------------------------------------


# The longest value each text field may hold (the store's column sizes).
MAX_LENGTH = {
    "name": 512,
    "host": 1024,
    "database": 2048,
    "username": 512,
    "defaultSchema": 512,
    "includeSchemas": 65536,
    "passwordUnencrypted": 65536,
}


def _text(body: dict[str, Any], field: str, *, required: bool = False) -> str | None:
    value = body.get(field)
    if value is None:
        if required:
            raise ValidationFailed(field, "Required")
        return None
    if not isinstance(value, str):
        raise ValidationFailed(field, "Expected string")
    limit = MAX_LENGTH.get(field)
    if limit is not None and len(value) > limit:
        raise ValidationFailed(field, f"Must be at most {limit} characters")
    if required and not value.strip() and field != "passwordUnencrypted":
        raise ValidationFailed(field, "Required")
    return value


def _whole_number(value: Any) -> bool:
    """ASCII digits, or a float with nothing after the point (JSON's 5.0)."""
    if isinstance(value, str):
        text = value.strip()
        return text.isascii() and text.isdigit()
    return isinstance(value, float) and value.is_integer()


def _integer(body: dict[str, Any], field: str, low: int, high: int) -> int | None:
    value = body.get(field)
    if value is None:
        return None
    if _whole_number(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationFailed(field, "Expected number")
    if not low <= value <= high:
        raise ValidationFailed(field, f"Must be between {low} and {high}")
    return value


# Pool and concurrency settings (engines/limits.py reads them): their bounds.
POOL_SETTINGS: dict[str, tuple[float, float]] = {
    "poolSize": (1, limits.MAX_POOL_SIZE),
    "maxOverflow": (0, limits.MAX_OVERFLOW),
    "acquireTimeoutSeconds": (
        limits.MIN_ACQUIRE_TIMEOUT_SECONDS,
        limits.MAX_ACQUIRE_TIMEOUT_SECONDS,
    ),
    "maxConcurrentQueries": (1, limits.MAX_CONCURRENT_QUERIES),
    "maxQueuedQueries": (0, limits.MAX_QUEUED_QUERIES),
}


def _pool_setting(body: dict[str, Any], field: str) -> float | None:
    """A pool setting within its bounds (seconds may have a fraction), or
    None (back to its default)."""
    value = body.get(field)
    if value is None:
        return None
    low, high = POOL_SETTINGS[field]
    if field == "acquireTimeoutSeconds":
        if isinstance(value, str) and value.strip().isascii():
            try:
                value = float(value)
            except ValueError:
                raise ValidationFailed(field, "Expected number") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationFailed(field, "Expected number")
        if not low <= value <= high:  # NaN is never within
            raise ValidationFailed(field, f"Must be between {low} and {high}")
        return value
    return _integer(body, field, int(low), int(high))


def _role(value: Any) -> str:
    role = canonical_role(value) if isinstance(value, str) else None
    if role is None:
        raise ValidationFailed("baseRole", "Invalid enum value")
    return role


def _boolean(body: dict[str, Any], field: str) -> bool | None:
    value = body.get(field)
    if value is None:
        return None
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ValidationFailed(field, "Expected boolean")
    return value


def _check_secrets(dialect: str, body: dict[str, Any]) -> dict[str, str]:
    allowed = RULES[dialect].secrets
    secrets: dict[str, str] = {}
    for field, stored_as in SECRET_FIELDS.items():
        if body.get(field) is None:
            continue
        if field not in allowed:
            raise ValidationFailed(field, f"Not supported for dialect {dialect}")
        value = body[field]
        if not isinstance(value, str):
            raise ValidationFailed(field, "Expected string")
        secrets[stored_as] = value
    return secrets


def _validate_host(dialect: str, host: str | None) -> None:
    if dialect == "snowflake" and host and "snowflakecomputing.com" in host.lower():
        raise ValidationFailed(
            "host", "Please only include your Snowflake account identifier"
        )


def _validate_create(body: dict[str, Any]) -> str:
    dialect = body.get("dialect")
    if dialect is None or dialect == "":
        raise ValidationFailed("dialect", "Required")
    if not isinstance(dialect, str) or dialect not in RULES:
        raise BadRequest("Invalid connection dialect")
    _text(body, "name", required=True)
    for field in RULES[dialect].required:
        if field == "port":
            if _integer(body, "port", 1, 65535) is None:
                raise ValidationFailed("port", "Required")
        elif field == "acceptsLicense":
            if body.get(field) is not True:
                raise ValidationFailed(field, "Required")
        elif field in OPTION_FIELDS:
            if not body.get(field):
                raise ValidationFailed(field, "Required")
        else:
            _text(body, field, required=True)
    _validate_host(dialect, body.get("host"))
    return dialect


# -- create / read ------------------------------------------------------------


def create_connection(store: Store, box: SecretBox, body: dict[str, Any]) -> str:
    dialect = _validate_create(body)
    row = models.Connection(
        name=str(body["name"]).strip(),
        dialect=dialect,
        host=_text(body, "host"),
        port=_integer(body, "port", 1, 65535),
        database=_text(body, "database"),
        username=_text(body, "username"),
        default_schema=_text(body, "defaultSchema"),
        include_schemas=_text(body, "includeSchemas"),
        query_timeout_seconds=_integer(body, "queryTimeoutSeconds", 1, 3600) or 900,
        connect_timeout_seconds=_integer(body, "connectTimeoutSeconds", 1, 300) or 10,
        base_role=_role(body["baseRole"]) if body.get("baseRole") else "QUERIER",
        allow_branch_environments=bool(
            _boolean(body, "allowBranchConnectionEnvironments")
        ),
        options=_options(body, {}),
        secrets=box.encrypt(_check_secrets(dialect, body)),
    )
    with store.write() as session:
        session.add(row)
        session.flush()
        return row.id


def _options(body: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The connection's options with the body's applied; a pool setting is
    checked, and null takes it back to its default."""
    options = dict(current)
    for key in OPTION_FIELDS:
        if key not in body:
            continue
        value = _pool_setting(body, key) if key in POOL_SETTINGS else body[key]
        if value is None and key in POOL_SETTINGS:
            options.pop(key, None)
        else:
            options[key] = value
    return options


def list_connections(
    store: Store, params: dict[str, str], visible: set[str] | None
) -> dict[str, Any]:
    """All connections matching the filters; ``visible`` limits the result to
    those ids (None: no limit)."""
    unknown = [key for key in params if key not in LIST_PARAMS]
    if unknown:
        raise BadRequest(
            "Bad Request: formErrors: Unrecognized key(s) in object: "
            + ", ".join(f"'{key}'" for key in unknown)
        )
    sort_field = params.get("sortField", "name")
    if sort_field not in SORT_FIELDS:
        raise ValidationFailed(
            "sortField",
            "Invalid enum value. Expected 'database' | 'dialect' | 'name', "
            f"received '{sort_field}'",
        )
    direction = params.get("sortDirection", "asc")
    if direction not in ("asc", "desc"):
        raise ValidationFailed(
            "sortDirection",
            f"Invalid enum value. Expected 'asc' | 'desc', received '{direction}'",
        )
    dialects = split_list(params.get("dialect"), "dialect")
    bad = [name for name in dialects if name not in RULES]
    if bad:
        raise BadRequest(f"Invalid dialect(s): {', '.join(bad)}")
    include_deleted = params.get("includeDeleted", "false").lower()
    if include_deleted not in ("true", "false"):
        raise ValidationFailed("includeDeleted", "Expected boolean")

    with store.read() as session:
        rows = list(session.scalars(select(models.Connection)))
    name = params.get("name", "").lower()
    database = params.get("database", "").lower()
    rows = [
        row
        for row in rows
        if (include_deleted == "true" or row.deleted_at is None)
        and (visible is None or row.id in visible)
        and name in row.name.lower()
        and database in (row.database or "").lower()
        and (not dialects or row.dialect in dialects)
    ]
    rows.sort(
        key=lambda row: (str(getattr(row, sort_field) or "").lower(), row.id),
        reverse=direction == "desc",
    )
    return {"connections": [connection_record(row) for row in rows]}


def _live(session: Session, connection_id: str) -> models.Connection:
    row = (
        session.get(models.Connection, connection_id)
        if is_uuid(connection_id)
        else None
    )
    if row is None or row.deleted_at is not None:
        raise NotFound("Connection not found")
    return row


def get_connection(store: Store, connection_id: str) -> dict[str, Any]:
    with store.read() as session:
        return {"connection": connection_record(_live(session, connection_id))}


def engine_spec(store: Store, box: SecretBox, connection_id: str) -> ConnectionSpec:
    """The resolved connection as engines/ needs it, secrets decrypted."""
    with store.read() as session:
        row = _live(session, connection_id)
    options = dict(row.options or {})
    return ConnectionSpec(
        id=row.id,
        name=row.name,
        dialect=row.dialect,
        host=row.host,
        port=row.port,
        database=row.database,
        username=row.username,
        default_schema=row.default_schema,
        query_timeout_seconds=row.query_timeout_seconds,
        connect_timeout_seconds=row.connect_timeout_seconds,
        credentials_version=row.credentials_version,
        options=options,
        secrets=box.decrypt(row.secrets, connection_name=row.name),
    )


# -- update -------------------------------------------------------------------

MESSAGES = {
    frozenset({"role", "attribute"}): (
        "Updated connection default role and user attribute settings."
    ),
    frozenset({"attribute"}): "Updated environment user attribute settings.",
    frozenset({"role"}): "Updated connection default role.",
    frozenset({"credentials"}): "Updated connection credentials.",
    frozenset(): "No updates were made to the connection.",
}


def _attribute_change(body: dict[str, Any]) -> tuple[bool, str | None, Any]:
    """(present, attribute name or None to clear, raw default values) from
    either spelling; both at once must agree."""
    nested_present = "environmentUserAttribute" in body
    flat_present = FLAT_NAME in body or FLAT_VALUES in body
    nested: tuple[str | None, Any] | None = None
    flat: tuple[str | None, Any] | None = None
    if nested_present:
        value = body["environmentUserAttribute"]
        if value is None:
            nested = (None, None)
        elif not isinstance(value, dict):
            raise ValidationFailed("environmentUserAttribute", "Expected object")
        else:
            if not value.get("attributeName"):
                raise ValidationFailed("attributeName", "Required")
            nested = (value["attributeName"], value.get("defaultValues"))
    if flat_present:
        flat = (body.get(FLAT_NAME) or None, body.get(FLAT_VALUES))
        if FLAT_NAME not in body:
            flat = ("", flat[1])  # defaults only: keep the current name
    if nested is not None and flat is not None:
        same = nested[0] == flat[0] and split_list(
            nested[1], "defaultValues"
        ) == split_list(flat[1], FLAT_VALUES)
        if not same:
            raise ValidationFailed(
                "environmentUserAttribute", f"conflicts with {FLAT_NAME}"
            )
    chosen = nested if nested is not None else flat
    if chosen is None:
        return False, None, None
    return True, chosen[0], chosen[1]


def _apply_attribute(
    session: Session, row: models.Connection, name: str | None, raw_defaults: Any
) -> None:
    if name == "":
        name = row.environment_attribute
        if name is None:
            raise ValidationFailed("attributeName", "Required")
    if name is None:
        row.environment_attribute = None
        row.default_values = None
        _replace_base_claims(session, row.id, [])
        return
    if not isinstance(name, str):
        raise ValidationFailed("attributeName", "Expected string")
    definition = session.scalar(
        select(models.UserAttribute).where(models.UserAttribute.name == name)
    )
    if definition is None and name not in SYSTEM_ATTRIBUTES:
        raise ValidationFailed("attributeName", f'Unknown user attribute "{name}"')
    kind = definition.type if definition is not None else "String"
    defaults = normalise(split_list(raw_defaults, FLAT_VALUES), kind, FLAT_VALUES)
    row.environment_attribute = name
    row.default_values = defaults or None
    _reclaim_all(session, row.id, defaults, kind)


def _reclaim_all(
    session: Session, base_id: str, defaults: list[str], kind: str
) -> None:
    """Claim the base's defaults and every environment's values again in the
    attribute's canonical form (``01`` stored before the base routed on a
    Number attribute becomes ``1``), so values compare and stay unique as
    that attribute's values."""
    session.execute(
        delete(models.AttributeValueClaim).where(
            models.AttributeValueClaim.base_connection_id == base_id
        )
    )
    claim_values(session, base_id, None, defaults)
    links = session.scalars(
        select(models.ConnectionEnvironment)
        .where(models.ConnectionEnvironment.base_connection_id == base_id)
        .order_by(
            models.ConnectionEnvironment.created_at, models.ConnectionEnvironment.id
        )
    )
    for link in links:
        values = normalise(list(link.values or ()), kind, "userAttributeValues")
        claim_values(session, base_id, link.id, values)
        if values != list(link.values or ()):
            link.values = values


def _replace_base_claims(session: Session, base_id: str, values: list[str]) -> None:
    session.execute(
        delete(models.AttributeValueClaim).where(
            models.AttributeValueClaim.base_connection_id == base_id,
            models.AttributeValueClaim.connection_environment_id.is_(None),
        )
    )
    claim_values(session, base_id, None, values)


def claim_values(
    session: Session, base_id: str, link_id: str | None, values: list[str]
) -> None:
    """Claim values for a base's environment (or its defaults), failing with
    the first value some other environment of the base already holds."""
    taken = set(
        session.scalars(
            select(models.AttributeValueClaim.value).where(
                models.AttributeValueClaim.base_connection_id == base_id,
                models.AttributeValueClaim.value.in_(values),
            )
        )
    )
    for value in values:
        if value in taken:
            raise BadRequest(f'User attribute value "{value}" is already in use')
    session.add_all(
        models.AttributeValueClaim(
            base_connection_id=base_id, connection_environment_id=link_id, value=value
        )
        for value in values
    )
    session.flush()


def raced_claim(
    store: Store, base_id: str, link_id: str | None, values: list[str]
) -> BadRequest:
    """The error for a claim that lost a race to a concurrent writer (the
    unique index refused it): names the first value now held elsewhere."""
    with store.read() as session:
        rows = session.execute(
            select(
                models.AttributeValueClaim.value,
                models.AttributeValueClaim.connection_environment_id,
            ).where(
                models.AttributeValueClaim.base_connection_id == base_id,
                models.AttributeValueClaim.value.in_(values),
            )
        ).all()
    taken = {value for value, holder in rows if holder != link_id}
    first = next((value for value in values if value in taken), values[0])
    return BadRequest(f'User attribute value "{first}" is already in use')


def _apply_fields(row: models.Connection, body: dict[str, Any]) -> set[str]:
    changed: set[str] = set()
    for field, column in EDITABLE.items():
        if field not in body:
            continue
        if field == "port":
            value: Any = _integer(body, field, 1, 65535)
        elif field == "queryTimeoutSeconds":
            value = _integer(body, field, 1, 3600)
        elif field == "connectTimeoutSeconds":
            value = _integer(body, field, 1, 300)
        elif field == "allowBranchConnectionEnvironments":
            value = bool(_boolean(body, field))
        else:
            value = _text(body, field, required=field == "name")
        if value is None and column in (
            "query_timeout_seconds",
            "connect_timeout_seconds",
        ):
            raise ValidationFailed(field, "Required")
        setattr(row, column, value.strip() if column == "name" else value)
        changed.add(column)
    _validate_host(row.dialect, row.host)
    return changed


def update_connection(
    store: Store, box: SecretBox, connection_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    if not body:
        raise BadRequest("Bad Request: Empty request body")
    present, name, defaults = _attribute_change(body)
    try:
        parts = _update(store, box, connection_id, body, (present, name, defaults))
    except IntegrityError:
        values = split_list(defaults, FLAT_VALUES)
        raise raced_claim(store, connection_id, None, values) from None
    message = MESSAGES.get(frozenset(parts))
    return {"success": True, "message": message or "Updated connection settings."}


def _update(
    store: Store,
    box: SecretBox,
    connection_id: str,
    body: dict[str, Any],
    attribute: tuple[bool, str | None, Any],
) -> set[str]:
    present, name, defaults = attribute
    parts: set[str] = set()
    with store.write() as session:
        row = _live(session, connection_id)
        if "baseRole" in body:
            row.base_role = _role(body["baseRole"])
            parts.add("role")
        if present:
            _apply_attribute(session, row, name, defaults)
            parts.add("attribute")
        secrets = _check_secrets(row.dialect, body)
        changed = _apply_fields(row, body)
        pool = {key: body[key] for key in POOL_SETTINGS if key in body}
        if pool:
            options = _options(pool, row.options or {})
            if options != (row.options or {}):
                row.options = options
                changed.add("options")
        if secrets:
            current = box.decrypt(row.secrets, connection_name=row.name)
            row.secrets = box.encrypt({**current, **secrets})
            parts.add("credentials")
        if secrets or changed & CREDENTIAL_COLUMNS:
            row.credentials_version += 1
        if changed:
            parts.add("settings")
        row.updated_at = utcnow()
    return parts


# -- archive ------------------------------------------------------------------


def archive_connection(store: Store, connection_id: str) -> dict[str, Any]:
    """Soft delete: wipe secrets and drop every link the connection is in."""
    with store.write() as session:
        row = (
            session.get(models.Connection, connection_id)
            if is_uuid(connection_id)
            else None
        )
        if row is None:
            raise NotFound("Connection not found")
        if row.deleted_at is not None:
            raise Gone(f"Connection {connection_id} is already deleted")
        links = select(models.ConnectionEnvironment.id).where(
            (models.ConnectionEnvironment.base_connection_id == row.id)
            | (models.ConnectionEnvironment.environment_connection_id == row.id)
        )
        session.execute(
            delete(models.AttributeValueClaim).where(
                models.AttributeValueClaim.connection_environment_id.in_(links)
                | (models.AttributeValueClaim.base_connection_id == row.id)
            )
        )
        session.execute(
            delete(models.ConnectionEnvironment).where(
                models.ConnectionEnvironment.id.in_(links.scalar_subquery())
            )
        )
        row.deleted_at = utcnow()
        row.secrets = None
        row.credentials_version += 1
    return {"success": True, "message": f"Connection {connection_id} deleted"}
