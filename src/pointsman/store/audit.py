"""The audit trail: every configuration change, recorded with who made it.

Changes are observed on the session, not in each service, so a write added
tomorrow is audited without anyone remembering to. Three observers feed one
per-transaction buffer:

- ``before_flush``: ORM deletes, and the rows the database will remove or
  null out through ``ON DELETE`` rules (it does that out of the ORM's sight);
- ``after_flush``: ORM inserts and updates, once defaults and generated keys
  are known and while attribute history still holds the old values;
- ``do_orm_execute``: bulk ``insert``/``update``/``delete`` statements, which
  bypass the flush; the affected rows are read before (and, for an update,
  after) the statement runs.

The buffer keeps one entry per row, so a row deleted and inserted again in the
same transaction (as user attribute values are) comes out as one update, or as
nothing when it ends up unchanged. On commit the buffer becomes
:class:`~pointsman.store.models.AuditEvent` rows in the same transaction; on
rollback it is dropped. Secrets never enter an event: an encrypted column is
shown as ``"set"`` / ``"changed"``, a token hash is left out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

from sqlalchemy import (
    ColumnElement,
    ForeignKey,
    Table,
    and_,
    event,
    insert,
    inspect,
    or_,
)
from sqlalchemy import select as select_rows
from sqlalchemy.engine import Result
from sqlalchemy.orm import InstanceState, ORMExecuteState, Session, sessionmaker
from sqlalchemy.sql.dml import Delete, Insert, Update

from pointsman.store.models import AuditEvent, Base, new_id, utcnow

Row = dict[str, Any]
ActorIds = tuple[str | None, str | None]

# Bookkeeping, logs and rows derived from audited ones.
NOT_AUDITED = frozenset(
    {"config_state", "query_log", "audit_events", "attribute_value_claims"}
)
# Encrypted columns: an event says that they changed, never what they hold.
SECRET_COLUMNS = {"connections": frozenset({"secrets"})}
# Columns left out of every event.
HIDDEN_COLUMNS = {"api_tokens": frozenset({"token_hash"})}

_BUFFER = "pointsman.audit.pending"
_MISSING = object()
_actor: ContextVar[ActorIds | None] = ContextVar("pointsman_audit_actor", default=None)


# -- who ----------------------------------------------------------------------


def set_actor(user_id: str | None, token_id: str | None) -> Token[ActorIds | None]:
    """Attribute the writes of the current context (and of the worker threads
    it hands work to) to this user and token. A change is attributed to the
    actor set when it reaches the session's buffer (at flush or statement
    time), so set it around the whole transaction."""
    return _actor.set((user_id, token_id))


@contextmanager
def acting_as(user_id: str | None, token_id: str | None) -> Iterator[None]:
    token = set_actor(user_id, token_id)
    try:
        yield
    finally:
        _actor.reset(token)


def current_actor() -> ActorIds:
    return _actor.get() or (None, None)


# -- the per-transaction buffer -----------------------------------------------


@dataclass
class _Change:
    """A row's state before the transaction (None: it did not exist) and
    after it (None: it no longer exists), as far as the changes tell, and
    who was acting when it first changed."""

    before: Row | None
    after: Row | None
    actor: ActorIds


def _buffer(session: Session) -> dict[tuple[str, str], _Change]:
    buffer: dict[tuple[str, str], _Change] = session.info.setdefault(_BUFFER, {})
    return buffer


def _note(
    session: Session, table: Table, before: Row | None, after: Row | None
) -> None:
    if table.name in NOT_AUDITED:
        return
    key = (table.name, _resource_id(table, after if after is not None else before))
    change = _buffer(session).get(key)
    if change is None:
        _buffer(session)[key] = _Change(before, after, current_actor())
        return

    if change.before is not None and before is not None:
        change.before = {**before, **change.before}
    change.after = None if after is None else {**(change.after or {}), **after}


def _resource_id(table: Table, values: Row | None) -> str:
    values = values or {}
    return ":".join(str(values.get(column.name, "?")) for column in table.primary_key)


def _plain(value: Any) -> Any:
    """A JSON-safe copy: timestamps as ISO 8601 UTC with milliseconds."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
        return (
            moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        )
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(item) for item in value]
    return value


# -- turning the buffer into events -------------------------------------------


def _event(table_name: str, resource_id: str, change: _Change) -> Row | None:
    """The audit_events row for one row's net change, if it changed."""
    before, after = change.before, change.after
    if before is None and after is None:
        return None
    if before is None:
        action, before, after = "create", None, _masked(table_name, after, "set")
    elif after is None:
        action, before, after = "delete", _masked(table_name, before, "set"), None
    else:
        changed = [key for key in after if before.get(key, _MISSING) != after[key]]
        before = _masked(table_name, {key: before.get(key) for key in changed})
        after = _masked(table_name, {key: after[key] for key in changed})
        if not after:
            return None
        action = "update"
    return {
        "action": action,
        "resource_type": table_name,
        "resource_id": resource_id,
        "before": before,
        "after": after,
        "actor_user_id": change.actor[0],
        "token_id": change.actor[1],
    }


def _masked(table_name: str, values: Row | None, word: str = "changed") -> Row:
    hidden = HIDDEN_COLUMNS.get(table_name, frozenset())
    secret = SECRET_COLUMNS.get(table_name, frozenset())
    return {
        key: (word if key in secret and value is not None else value)
        for key, value in (values or {}).items()
        if key not in hidden
    }


def _before_commit(session: Session) -> None:
    # Changes still pending are flushed by the commit after this hook; flush
    # them now so that they are in the buffer.
    session.flush()
    pending = session.info.pop(_BUFFER, None)
    if not pending:
        return

    start = utcnow()
    events = [
        row
        for (table_name, resource_id), change in pending.items()
        if (row := _event(table_name, resource_id, change)) is not None
    ]
    for position, audit_event in enumerate(events):
        audit_event["id"] = new_id()
        # Distinct, ordered timestamps keep a transaction's events in order.
        audit_event["at"] = start + timedelta(microseconds=position)
    if events:
        session.connection().execute(insert(_events_table()), events)


def _events_table() -> Table:
    return Base.metadata.tables[AuditEvent.__tablename__]


def _after_transaction_end(session: Session, transaction: Any) -> None:
    if transaction.parent is None:
        session.info.pop(_BUFFER, None)


# -- ORM changes --------------------------------------------------------------


def _columns(state: InstanceState[Any]) -> Iterator[tuple[str, str]]:
    """(attribute key, column name) of each column the object maps."""
    for prop in state.mapper.column_attrs:
        yield prop.key, prop.columns[0].name


def _committed_row(state: InstanceState[Any]) -> Row:
    """The object's row as the database holds it, without loading anything."""
    row: Row = {}
    for key, name in _columns(state):
        history = state.attrs[key].history
        if history.deleted:
            row[name] = _plain(history.deleted[0])
        elif history.unchanged:
            row[name] = _plain(history.unchanged[0])
    return row


def _current_row(state: InstanceState[Any]) -> Row:
    return {
        name: _plain(state.dict[key])
        for key, name in _columns(state)
        if key in state.dict
    }


def _inserted_row(state: InstanceState[Any]) -> Row:
    """A just-inserted object's row: a column it never set is NULL, unless the
    database fills it in (then it is left out, as unknown)."""
    row: Row = {}
    for prop in state.mapper.column_attrs:
        column = prop.columns[0]
        if prop.key in state.dict:
            row[column.name] = _plain(state.dict[prop.key])
        elif column.server_default is None:
            row[column.name] = None
    return row


def _table_of(state: InstanceState[Any]) -> Table:
    table = state.mapper.local_table
    assert isinstance(table, Table)
    return table


def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    for instance in list(session.deleted):
        state = inspect(instance)
        table = _table_of(state)
        if table.name in NOT_AUDITED and not _dependents(table.name):
            continue
        row = _committed_row(state)
        _note(session, table, row, None)
        _follow_deletes(session, table, [row])


def _after_flush(session: Session, _context: Any) -> None:
    for instance in session.new:
        state = inspect(instance)
        table = _table_of(state)
        if table.name not in NOT_AUDITED:
            _note(session, table, None, _inserted_row(state))
    for instance in session.dirty:
        state = inspect(instance)
        table = _table_of(state)
        if table.name in NOT_AUDITED:
            continue
        before: Row = {}
        after: Row = {}
        for key, name in _columns(state):
            history = state.attrs[key].history
            if history.added:
                before[name] = _plain(history.deleted[0]) if history.deleted else None
                after[name] = _plain(history.added[0])
        if after:
            identity = _current_row(state)
            _note(session, table, {**identity, **before}, {**identity, **after})


# -- what the database does on its own: ON DELETE CASCADE / SET NULL --------


@cache
def _dependents(table_name: str) -> tuple[ForeignKey, ...]:
    """Foreign keys that make the database change other rows when a row of
    this table is deleted."""
    return tuple(
        key
        for child in Base.metadata.sorted_tables
        for key in child.foreign_keys
        if key.column.table.name == table_name
        and (key.ondelete or "").upper() in ("CASCADE", "SET NULL")
    )


def _follow_deletes(
    session: Session, table: Table, rows: list[Row], depth: int = 0
) -> None:
    if not rows or depth > 8:
        return
    for key in _dependents(table.name):
        parents = {
            row[key.column.name] for row in rows if row.get(key.column.name) is not None
        }
        if not parents:
            continue
        child = key.parent.table
        assert isinstance(child, Table)
        found = _read(session, child, key.parent.in_(parents))
        if (key.ondelete or "").upper() == "SET NULL":
            for row in found:
                _note(session, child, row, {**row, key.parent.name: None})
            continue
        for row in found:
            _note(session, child, row, None)
        _follow_deletes(session, child, found, depth + 1)


# -- bulk statements ----------------------------------------------------------


def _read(
    session: Session, table: Table, criteria: ColumnElement[bool] | None
) -> list[Row]:
    query = select_rows(table)
    if criteria is not None:
        query = query.where(criteria)
    result = session.connection().execute(query)
    names = [column.name for column in table.columns]
    return [
        {name: _plain(value) for name, value in zip(names, row, strict=True)}
        for row in result
    ]


def _by_keys(table: Table, keys: Iterable[Mapping[str, Any]]) -> ColumnElement[bool]:
    primary = list(table.primary_key)
    return or_(
        *(and_(*(column == key[column.name] for column in primary)) for key in keys)
    )


def _statement_rows(state: ORMExecuteState, table: Table) -> list[Row]:
    """The rows an insert sends, with the table's column names."""
    parameters = state.parameters
    if isinstance(parameters, Mapping):
        sent = [dict(parameters)] if parameters else []
    else:
        sent = [dict(item) for item in parameters or ()]
    if not sent:
        statement = state.statement
        assert isinstance(statement, Insert)
        sent = [dict(statement.compile().params)]
    return [
        {name: _plain(value) for name, value in row.items() if name in table.c}
        for row in sent
    ]


def _affected(state: ORMExecuteState, table: Table) -> list[Row]:
    """The rows an update or delete will touch, read before it runs."""
    parameters = state.parameters
    if isinstance(parameters, list) and parameters:
        # "Bulk by primary key": one set of parameters per row.
        return _read(state.session, table, _by_keys(table, parameters))
    statement = state.statement
    assert isinstance(statement, Update | Delete)
    return _read(state.session, table, statement.whereclause)


def _on_execute(state: ORMExecuteState) -> Result[Any] | None:
    statement = state.statement
    if not isinstance(statement, Insert | Update | Delete):
        return None
    table = Base.metadata.tables.get(getattr(statement.table, "name", ""))
    if table is None:
        return None
    audited = table.name not in NOT_AUDITED
    cascades = isinstance(statement, Delete) and bool(_dependents(table.name))
    if not (audited or cascades):
        return None
    session = state.session
    # The statement will see pending ORM changes (it autoflushes after this
    # hook), so the rows read for its audit must see them too. _autoflush is
    # the statement's own: it does nothing inside a flush or without autoflush.
    session._autoflush()

    if isinstance(statement, Insert):
        for row in _statement_rows(state, table):
            _note(session, table, None, row)
        return None
    before = _affected(state, table)
    if isinstance(statement, Delete):
        for row in before:
            _note(session, table, row, None)
        _follow_deletes(session, table, before)
        return None

    result = state.invoke_statement()
    if before:
        after = {
            _resource_id(table, row): row
            for row in _read(session, table, _by_keys(table, before))
        }
        for row in before:
            _note(session, table, row, after.get(_resource_id(table, row), row))
    return result


def install(sessions: sessionmaker[Session]) -> None:
    """Audit every session these sessions make."""
    event.listen(sessions, "before_flush", _before_flush)
    event.listen(sessions, "after_flush", _after_flush)
    event.listen(sessions, "do_orm_execute", _on_execute)
    event.listen(sessions, "before_commit", _before_commit)
    event.listen(sessions, "after_transaction_end", _after_transaction_end)
