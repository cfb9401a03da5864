"""The metadata schema. Alembic migrations under ``migrations/`` follow it."""

from __future__ import annotations

import secrets
import string
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    return str(uuid.uuid4())


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always read back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ConfigState(Base):
    """One row whose version moves on every configuration change."""

    __tablename__ = "config_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    membership_id: Mapped[str] = mapped_column(
        String(36), unique=True, nullable=False, default=new_id
    )
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    email_key: Mapped[str] = mapped_column(String(320), unique=True, nullable=False)
    display_name: Mapped[str] = mapped_column(String(512), nullable=False)
    active: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    is_org_admin: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserAttribute(Base):
    __tablename__ = "user_attributes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    label: Mapped[str] = mapped_column(String(256), nullable=False)
    description: Mapped[str | None] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(16), nullable=False, default="String")
    multiple_values: Mapped[bool] = mapped_column(Boolean, default=False)
    default_value: Mapped[list[str] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class UserAttributeValue(Base):
    """A user's own value(s) of one attribute, stored normalised."""

    __tablename__ = "user_attribute_values"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    attribute_id: Mapped[str] = mapped_column(
        ForeignKey("user_attributes.id", ondelete="CASCADE"), primary_key=True
    )
    values: Mapped[list[str]] = mapped_column(JSON, nullable=False)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(256), nullable=False)
    kind: Mapped[str] = mapped_column(String(16), nullable=False)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, default=True)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Connection(Base):
    __tablename__ = "connections"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(512), nullable=False)
    dialect: Mapped[str] = mapped_column(String(32), nullable=False)
    host: Mapped[str | None] = mapped_column(String(1024))
    port: Mapped[int | None] = mapped_column(Integer)
    database: Mapped[str | None] = mapped_column(String(2048))
    username: Mapped[str | None] = mapped_column(String(512))
    default_schema: Mapped[str | None] = mapped_column(String(512))
    include_schemas: Mapped[str | None] = mapped_column(Text)
    query_timeout_seconds: Mapped[int] = mapped_column(Integer, default=900)
    connect_timeout_seconds: Mapped[int] = mapped_column(Integer, default=10)
    base_role: Mapped[str] = mapped_column(String(64), default="QUERIER")
    environment_attribute: Mapped[str | None] = mapped_column(String(128))
    default_values: Mapped[list[str] | None] = mapped_column(JSON)
    allow_branch_environments: Mapped[bool] = mapped_column(Boolean, default=False)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secrets: Mapped[str | None] = mapped_column(Text)
    credentials_version: Mapped[int] = mapped_column(Integer, default=1)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ConnectionEnvironment(Base):
    """The link from a base connection to one of its environment connections."""

    __tablename__ = "connection_environments"
    __table_args__ = (
        UniqueConstraint("base_connection_id", "environment_connection_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    base_connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id"), nullable=False, index=True
    )
    environment_connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id"), nullable=False, index=True
    )
    values: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AttributeValueClaim(Base):
    """One user-attribute value claimed within a base: by one of its
    environments, or (``connection_environment_id`` null) by the base's own
    default values. The unique index is what keeps two writers from giving
    the same value to two environments."""

    __tablename__ = "attribute_value_claims"
    __table_args__ = (UniqueConstraint("base_connection_id", "value"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    base_connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id"), nullable=False
    )
    connection_environment_id: Mapped[str | None] = mapped_column(
        ForeignKey("connection_environments.id", ondelete="CASCADE"), index=True
    )
    value: Mapped[str] = mapped_column(String(512), nullable=False)


class QueryLogEntry(Base):
    __tablename__ = "query_log"
    __table_args__ = (Index("ix_query_log_started", "started_at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    duration_ms: Mapped[float | None] = mapped_column()
    user_id: Mapped[str | None] = mapped_column(String(36), index=True)
    token_id: Mapped[str | None] = mapped_column(String(36))
    base_connection_id: Mapped[str | None] = mapped_column(String(36))
    connection_id: Mapped[str | None] = mapped_column(String(36), index=True)
    connection_environment_id: Mapped[str | None] = mapped_column(String(36))
    source: Mapped[str | None] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    row_count: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    error: Mapped[str | None] = mapped_column(Text)


# -- identity and access ------------------------------------------------------


def new_group_id() -> str:
    """SCIM group ids are short opaque strings, as Omni's are."""
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


class Group(Base):
    __tablename__ = "groups"

    id: Mapped[str] = mapped_column(String(16), primary_key=True, default=new_group_id)
    display_name: Mapped[str] = mapped_column(String(512), unique=True, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GroupMember(Base):
    __tablename__ = "group_members"

    group_id: Mapped[str] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class RoleGrant(Base):
    """A connection role given to one user or one group (exactly one is set)."""

    __tablename__ = "role_grants"
    __table_args__ = (
        UniqueConstraint("connection_id", "user_id"),
        UniqueConstraint("connection_id", "group_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connection_id: Mapped[str] = mapped_column(
        ForeignKey("connections.id"), nullable=False, index=True
    )
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE")
    )
    group_id: Mapped[str | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE")
    )
    role: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SelectableValues(Base):
    """The values of an attribute a user or a group may switch to."""

    __tablename__ = "selectable_values"
    __table_args__ = (
        UniqueConstraint("attribute_id", "user_id"),
        UniqueConstraint("attribute_id", "group_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    attribute_id: Mapped[str] = mapped_column(
        ForeignKey("user_attributes.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE")
    )
    group_id: Mapped[str | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE")
    )
    values: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    allow_any_value: Mapped[bool] = mapped_column(Boolean, default=False)


class AttributeSelection(Base):
    """A user's switch: the value(s) they chose for an attribute."""

    __tablename__ = "attribute_selections"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    attribute_id: Mapped[str] = mapped_column(
        ForeignKey("user_attributes.id", ondelete="CASCADE"), primary_key=True
    )
    values: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EnvironmentAccess(Base):
    """Who may pick an environment as their own (one user or one group)."""

    __tablename__ = "environment_access"
    __table_args__ = (
        UniqueConstraint("connection_environment_id", "user_id"),
        UniqueConstraint("connection_environment_id", "group_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    connection_environment_id: Mapped[str] = mapped_column(
        ForeignKey("connection_environments.id", ondelete="CASCADE"), nullable=False
    )
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE")
    )
    group_id: Mapped[str | None] = mapped_column(
        ForeignKey("groups.id", ondelete="CASCADE")
    )


class EnvironmentSelection(Base):
    """A user's pick for a base. The link id is kept even after the link
    goes (no foreign key), so a stale pick is seen and skipped, never
    silently turned into a pick of the base."""

    __tablename__ = "environment_selections"

    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    base_connection_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    connection_environment_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Branch(Base):
    """A branch pinning one environment of a base."""

    __tablename__ = "branches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(256), nullable=False)
    base_connection_id: Mapped[str] = mapped_column(String(36), nullable=False)
    connection_environment_id: Mapped[str] = mapped_column(String(36), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class AuditEvent(Base):
    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_at", "at", "id"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, default=utcnow)
    actor_user_id: Mapped[str | None] = mapped_column(String(36))
    token_id: Mapped[str | None] = mapped_column(String(36))
    action: Mapped[str] = mapped_column(String(16), nullable=False)
    resource_type: Mapped[str] = mapped_column(String(64), nullable=False)
    resource_id: Mapped[str] = mapped_column(String(128), nullable=False)
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
