"""The optional-extra dialects: dispatch, the extra named when its driver is
missing, the SQLAlchemy URL of each (never showing a secret), the generic
engine's timeout handling (driven through SQLAlchemy's own SQLite dialect),
and Redshift on the PostgreSQL path against the local PostgreSQL."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import socket
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.pool import NullPool

from pointsman.engines import ConnectionSpec, EngineRegistry, sqlalchemy_engine
from pointsman.engines.dialect_urls import DialectTarget, build_target
from pointsman.engines.registry import engine_class
from pointsman.engines.sqlalchemy_engine import SQLAlchemyEngine
from pointsman.errors import (
    DatabaseUnavailableError,
    MissingDriverError,
    QueryFailedError,
    QueryTimeoutError,
)

pytestmark = pytest.mark.anyio

SECRET = "Pa55/w:rd@with%chars"
# Top-level packages of every optional driver.
DRIVER_PACKAGES = frozenset(
    {
        "snowflake",
        "sqlalchemy_bigquery",
        "google",
        "databricks",
        "clickhouse_connect",
        "pymssql",
        "trino",
        "pyathena",
        "boto3",
    }
)
EXTRA_OF = {
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "databricks": "databricks",
    "clickhouse": "clickhouse",
    "mssql": "mssql",
    "sqlserver": "mssql",
    "trino": "trino",
    "athena": "athena",
}
PYATHENA_INSTALLED = importlib.util.find_spec("pyathena") is not None
INFINITE_SQL = (
    "with recursive c(x) as (select 1 union all select x + 1 from c)"
    " select count(*) from c"
)


def spec_for(dialect: str, **fields: Any) -> ConnectionSpec:
    values: dict[str, Any] = {
        "id": f"conn-{uuid.uuid4().hex[:8]}",
        "name": f"{dialect} test",
        "dialect": dialect,
        "query_timeout_seconds": 30,
        "connect_timeout_seconds": 3,
        **fields,
    }
    return ConnectionSpec(**values)


def _patched_find_spec(monkeypatch: pytest.MonkeyPatch, *, installed: bool) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        if name.split(".")[0] in DRIVER_PACKAGES:
            return importlib.machinery.ModuleSpec(name, None) if installed else None
        return real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


@pytest.fixture
def drivers_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every optional driver looks uninstalled, whatever this venv holds."""
    _patched_find_spec(monkeypatch, installed=False)


@pytest.fixture
def drivers_present(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every optional driver looks installed (nothing is imported)."""
    _patched_find_spec(monkeypatch, installed=True)


# -- dispatch -------------------------------------------------------------------


@pytest.mark.parametrize(("dialect", "extra"), sorted(EXTRA_OF.items()))
async def test_running_without_the_extra_names_it(
    registry: EngineRegistry, drivers_missing: None, dialect: str, extra: str
) -> None:
    spec = spec_for(dialect, host="db.example.com", secrets={"password": SECRET})

    with pytest.raises(MissingDriverError) as caught:
        await registry.run(spec, "select 1")

    assert caught.value.status == 400
    assert caught.value.detail == (
        f"Dialect {dialect} needs the optional extra: pip install 'pointsman[{extra}]'"
    )


async def test_testing_a_connection_without_the_extra_names_it(
    registry: EngineRegistry, drivers_missing: None
) -> None:
    report = await registry.test(spec_for("trino", host="trino.example.com"))

    assert report["ok"] is False
    assert report["error"] == (
        "Dialect trino needs the optional extra: pip install 'pointsman[trino]'"
    )


@pytest.mark.parametrize("dialect", sorted(EXTRA_OF))
def test_an_installed_driver_runs_on_the_sqlalchemy_engine(
    drivers_present: None, dialect: str
) -> None:
    assert engine_class(dialect) is SQLAlchemyEngine


def test_redshift_stays_on_the_postgres_engine() -> None:
    assert engine_class("redshift").__name__ == "PostgresEngine"


async def test_a_dialect_whose_plugin_cannot_load_still_names_the_extra(
    registry: EngineRegistry, drivers_present: None
) -> None:
    if PYATHENA_INSTALLED:
        pytest.skip("pyathena is installed: its plugin loads")
    spec = spec_for(
        "athena", database="AwsDataCatalog", options={"region": "us-east-1"}
    )

    with pytest.raises(MissingDriverError) as caught:
        await registry.run(spec, "select 1")

    assert caught.value.detail == (
        "Dialect athena needs the optional extra: pip install 'pointsman[athena]'"
    )


# -- URLs: the parts each dialect needs, and never a secret in a string ---------


def _no_secret_shown(target: DialectTarget, secret: str = SECRET) -> None:
    for text in (str(target.url), repr(target.url), repr(target)):
        assert secret not in text


def test_snowflake_url_with_a_password() -> None:
    spec = spec_for(
        "snowflake",
        host="acme-xy12345",
        database="ANALYTICS",
        default_schema="PUBLIC",
        username="svc",
        query_timeout_seconds=120,
        options={"warehouse": "COMPUTE_WH"},
        secrets={"password": SECRET},
    )

    target = build_target(spec)

    url = target.url
    assert (url.drivername, url.host, url.username) == (
        "snowflake",
        "acme-xy12345",
        "svc",
    )
    assert url.database == "ANALYTICS/PUBLIC"
    assert dict(url.query) == {"warehouse": "COMPUTE_WH"}
    assert url.password == SECRET
    assert target.connect_args["autocommit"] is True
    assert target.connect_args["session_parameters"] == {
        "STATEMENT_TIMEOUT_IN_SECONDS": 120
    }
    assert "private_key" not in target.connect_args
    _no_secret_shown(target)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_snowflake_key_pair_sends_der_bytes_and_no_password(
    rsa_key: rsa.RSAPrivateKey,
) -> None:
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    body_only = "".join(line for line in pem.splitlines() if "-----" not in line)
    spec = spec_for(
        "snowflake",
        host="acme-xy12345",
        username="svc",
        options={"warehouse": "WH", "hostOverride": "acme.privatelink.example.com"},
        secrets={"privateKey": body_only},
    )

    target = build_target(spec)

    der = target.connect_args["private_key"]
    loaded = serialization.load_der_private_key(der, password=None)
    assert loaded.private_numbers() == rsa_key.private_numbers()
    assert target.connect_args["authenticator"] == "SNOWFLAKE_JWT"
    assert target.url.password is None
    assert target.connect_args["account"] == "acme-xy12345"
    assert target.connect_args["host"] == "acme.privatelink.example.com"
    _no_secret_shown(target, body_only[:40])


def test_an_unreadable_private_key_is_unavailable_without_quoting_it() -> None:
    key = "MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQC-not-a-key"
    spec = spec_for("snowflake", host="acme", secrets={"privateKey": key})

    with pytest.raises(DatabaseUnavailableError) as caught:
        build_target(spec)

    assert caught.value.status == 502
    assert key not in caught.value.detail
    assert "private key" in caught.value.detail


SERVICE_ACCOUNT = {
    "type": "service_account",
    "project_id": "acme-analytics",
    "private_key_id": "k1",
    "private_key": "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n",
    "client_email": "svc@acme-analytics.iam.gserviceaccount.com",
}


def test_bigquery_url_and_credentials_from_the_service_account_json() -> None:
    key_json = json.dumps(SERVICE_ACCOUNT)
    spec = spec_for(
        "bigquery",
        database="acme-analytics",
        default_schema="sales",
        options={"region": "us", "maxBillingBytes": "1000000000"},
        secrets={"password": key_json},
    )

    target = build_target(spec)

    url = target.url
    assert (url.drivername, url.host, url.database) == (
        "bigquery",
        "acme-analytics",
        "sales",
    )
    assert dict(url.query) == {"location": "us", "maximum_bytes_billed": "1000000000"}
    assert url.password is None
    assert target.engine_kwargs["credentials_info"] == SERVICE_ACCOUNT
    _no_secret_shown(target, "secret")


def test_a_service_account_key_that_is_not_json_is_unavailable() -> None:
    spec = spec_for("bigquery", database="p", secrets={"password": SECRET})

    with pytest.raises(DatabaseUnavailableError) as caught:
        build_target(spec)

    assert SECRET not in caught.value.detail
    assert "service account key" in caught.value.detail


def test_databricks_url_carries_the_token_as_password_and_the_http_path() -> None:
    spec = spec_for(
        "databricks",
        host="dbc-1234.cloud.databricks.com",
        database="main",
        default_schema="sales",
        query_timeout_seconds=60,
        options={"warehouse": "/sql/1.0/warehouses/abc"},
        secrets={"password": SECRET},
    )

    target = build_target(spec)

    url = target.url
    assert (url.drivername, url.username, url.password) == (
        "databricks",
        "token",
        SECRET,
    )
    assert url.host == "dbc-1234.cloud.databricks.com"
    assert dict(url.query) == {
        "http_path": "/sql/1.0/warehouses/abc",
        "catalog": "main",
        "schema": "sales",
    }
    assert target.connect_args["session_configuration"] == {"STATEMENT_TIMEOUT": "60"}
    assert target.connect_args["_retry_stop_after_attempts_duration"] == 3.0
    _no_secret_shown(target)


@pytest.mark.parametrize(
    ("port", "secure", "expected_port"),
    [(None, False, 8123), (8123, False, 8123), (8443, True, 8443)],
)
def test_clickhouse_url_over_http_or_https(
    port: int | None, secure: bool, expected_port: int
) -> None:
    spec = spec_for(
        "clickhouse",
        host="ch.example.com",
        port=port,
        database="events",
        username="reader",
        query_timeout_seconds=45,
        secrets={"password": SECRET},
    )

    target = build_target(spec)

    url = target.url
    assert (url.drivername, url.host, url.port, url.database) == (
        "clickhousedb",
        "ch.example.com",
        expected_port,
        "events",
    )
    assert target.connect_args["secure"] is secure
    assert target.connect_args["max_execution_time"] == 45
    assert "verify" not in target.connect_args
    _no_secret_shown(target)


def test_clickhouse_trusting_any_certificate_turns_verification_off() -> None:
    spec = spec_for(
        "clickhouse", host="ch", port=8443, options={"trustServerCertificate": True}
    )

    assert build_target(spec).connect_args["verify"] is False


@pytest.mark.parametrize("dialect", ["mssql", "sqlserver"])
def test_sql_server_url_through_pymssql(dialect: str) -> None:
    spec = spec_for(
        dialect,
        host="sql.example.com",
        database="sales",
        username="reader",
        default_schema="dbo",
        query_timeout_seconds=90,
        secrets={"password": SECRET},
    )

    target = build_target(spec)

    url = target.url
    assert (url.drivername, url.host, url.port, url.database) == (
        "mssql+pymssql",
        "sql.example.com",
        1433,
        "sales",
    )
    assert target.connect_args["timeout"] == 90
    assert target.connect_args["login_timeout"] == 3
    assert target.connect_args["autocommit"] is True
    _no_secret_shown(target)


def test_trino_url_uses_https_with_a_password_and_quotes_the_catalog() -> None:
    spec = spec_for(
        "trino",
        host="trino.example.com",
        port=8443,
        database="my catalog",
        default_schema="sales/eu",
        username="reader",
        query_timeout_seconds=300,
        secrets={"password": SECRET},
    )

    target = build_target(spec)

    url = target.url
    assert (url.drivername, url.host, url.port) == ("trino", "trino.example.com", 8443)
    assert url.database == "my+catalog/sales%2Feu"
    assert target.connect_args["http_scheme"] == "https"
    assert target.connect_args["session_properties"] == {"query_max_run_time": "300s"}
    _no_secret_shown(target)


def test_trino_without_a_password_speaks_http_on_its_default_port() -> None:
    spec = spec_for("trino", host="trino", database="hive", username="u")

    target = build_target(spec)

    assert target.url.port == 8080
    assert target.connect_args["http_scheme"] == "http"


def test_athena_url_names_the_regional_endpoint_and_the_catalog() -> None:
    spec = spec_for(
        "athena",
        database="AwsDataCatalog",
        username="AKIAEXAMPLE",
        options={
            "region": "eu-west-1",
            "awsRoleArn": "arn:aws:iam::123456789012:role/reader",
        },
        secrets={"password": SECRET},
    )

    target = build_target(spec)

    url = target.url
    assert (url.drivername, url.host, url.port, url.database) == (
        "awsathena+rest",
        "athena.eu-west-1.amazonaws.com",
        443,
        "default",
    )
    assert dict(url.query) == {"catalog_name": "AwsDataCatalog"}
    assert url.username == "AKIAEXAMPLE"
    assert target.connect_args == {
        "region_name": "eu-west-1",
        "role_arn": "arn:aws:iam::123456789012:role/reader",
    }
    _no_secret_shown(target)


def test_athena_without_keys_leaves_credentials_to_boto3() -> None:
    spec = spec_for(
        "athena", database="AwsDataCatalog", options={"region": "us-east-1"}
    )

    url = build_target(spec).url

    assert url.username is None and url.password is None


# -- with a real driver installed: a closed port is a fast, scrubbed 502 ----------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("dialect", "driver"),
    [("trino", "trino"), ("clickhouse", "clickhouse_connect"), ("mssql", "pymssql")],
)
async def test_an_installed_driver_on_a_closed_port_is_unavailable(
    registry: EngineRegistry, dialect: str, driver: str
) -> None:
    pytest.importorskip(driver, reason=f"the {dialect} extra is not installed")
    spec = spec_for(
        dialect,
        host="127.0.0.1",
        port=closed_port(),
        database="db",
        username="reader",
        default_schema="dbo",
        secrets={"password": SECRET},
    )
    started = time.monotonic()

    with pytest.raises(DatabaseUnavailableError) as caught:
        await registry.run(spec, "select 1")

    assert time.monotonic() - started < 5
    assert caught.value.status == 502
    assert caught.value.detail == (
        f"Could not connect to connection '{dialect} test': connection refused"
    )
    report = await registry.test(spec)
    assert report["ok"] is False and SECRET not in report["error"]


# -- the generic engine, driven through SQLAlchemy's SQLite dialect ---------------


def sqlite_factory(path: Path) -> Callable[[ConnectionSpec], SAEngine]:
    """Engines on a SQLite file, with ``sleep_ms(n)`` (which ignores
    ``interrupt()``, like a driver that cannot cancel)."""

    def factory(spec: ConnectionSpec) -> SAEngine:
        engine = create_engine(
            f"sqlite:///{path}",
            poolclass=NullPool,
            connect_args={"check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def add_sleep(dbapi_connection: sqlite3.Connection, _: Any) -> None:
            dbapi_connection.create_function("sleep_ms", 1, _sleep_ms)

        return engine

    return factory


def _sleep_ms(milliseconds: int) -> int:
    time.sleep(milliseconds / 1000)
    return milliseconds


@pytest.fixture
async def generic(tmp_path: Path) -> AsyncIterator[SQLAlchemyEngine]:
    spec = spec_for("trino", query_timeout_seconds=1)
    engine = SQLAlchemyEngine(spec, engine_factory=sqlite_factory(tmp_path / "g.db"))
    yield engine
    await engine.aclose(5)


async def test_sql_runs_exactly_as_written(generic: SQLAlchemyEngine) -> None:
    result = await generic.run("select 1 as n, '50%' as p, ':name' as c, null as z")

    assert result.rows == [(1, "50%", ":name", None)]
    assert [(c.name, c.type) for c in result.columns] == [
        ("n", "int64"),
        ("p", "string"),
        ("c", "string"),
        ("z", "null"),
    ]


async def test_a_limit_cuts_the_rows_and_says_so(generic: SQLAlchemyEngine) -> None:
    sql = (
        "with recursive c(x) as (select 1 union all select x + 1 from c"
        " where x < 10) select x from c"
    )

    result = await generic.run(sql, limit=3)

    assert result.rows == [(1,), (2,), (3,)]
    assert result.truncated is True


async def test_a_database_error_is_a_query_failure_on_a_kept_connection(
    generic: SQLAlchemyEngine,
) -> None:
    with pytest.raises(QueryFailedError, match="no such table: missing"):
        await generic.run("select * from missing")

    stats = generic.pool_stats()
    assert stats["idle"] == 1 and stats["queryFailures"] == 1


async def test_past_the_timeout_the_driver_is_interrupted_and_the_link_dropped(
    generic: SQLAlchemyEngine,
) -> None:
    started = time.monotonic()

    with pytest.raises(QueryTimeoutError):
        await generic.run(INFINITE_SQL)

    assert time.monotonic() - started < 3
    # The statement really stopped: its thread let go within the grace.
    waited = time.monotonic()
    await generic.wait_background()
    await generic.pool.wait_closing()
    assert time.monotonic() - waited < 3
    stats = generic.pool_stats()
    assert stats["connectionsClosed"] == 1 and stats["idle"] == 0
    assert stats["queryTimeouts"] == 1


async def test_a_driver_that_cannot_cancel_is_abandoned_then_its_link_dropped(
    generic: SQLAlchemyEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlalchemy_engine, "find_canceller", lambda *_: None)
    started = time.monotonic()

    with pytest.raises(QueryTimeoutError):
        await generic.run("select sleep_ms(2500)")

    assert time.monotonic() - started < 2
    await generic.wait_background()
    await generic.pool.wait_closing()
    stats = generic.pool_stats()
    assert stats["connectionsClosed"] == 1 and stats["idle"] == 0


async def test_the_pool_is_sized_from_the_pool_size_option(tmp_path: Path) -> None:
    spec = spec_for("trino", options={"poolSize": 2})
    engine = SQLAlchemyEngine(spec, engine_factory=sqlite_factory(tmp_path / "p.db"))

    await engine.run("select 1")

    assert engine.pool_stats()["maxSize"] == 2
    await engine.aclose(5)


async def test_a_database_that_cannot_be_opened_is_unavailable(
    tmp_path: Path,
) -> None:
    factory = sqlite_factory(tmp_path / "no-such-dir" / "x.db")
    engine = SQLAlchemyEngine(spec_for("trino"), engine_factory=factory)

    with pytest.raises(DatabaseUnavailableError) as caught:
        await engine.run("select 1")

    assert caught.value.status == 502
    assert caught.value.detail.startswith(
        "Could not connect to connection 'trino test'"
    )
    await engine.aclose(5)


# -- Redshift: the PostgreSQL path, against the local PostgreSQL ------------------


@pytest.fixture
def redshift_spec(
    postgres_admin_params: Any, make_postgres_database: Callable[[], str]
) -> Iterator[ConnectionSpec]:
    params = postgres_admin_params
    yield spec_for(
        "redshift",
        host=params.host,
        port=params.port,
        database=make_postgres_database(),
        username=params.user,
        default_schema="public",
        query_timeout_seconds=10,
        secrets={"password": params.password} if params.password else {},
    )


async def test_redshift_runs_on_the_local_postgresql(
    registry: EngineRegistry, redshift_spec: ConnectionSpec
) -> None:
    result = await registry.run(
        redshift_spec, "select 1 as one, 'x'::varchar as letter", limit=10
    )

    assert result.rows == [(1, "x")]
    assert [c.name for c in result.columns] == ["one", "letter"]
    stats = registry.pool_stats(redshift_spec.id)
    assert stats is not None and stats["dialect"] == "redshift"


async def test_testing_a_redshift_connection_reports_the_server_version(
    registry: EngineRegistry, redshift_spec: ConnectionSpec
) -> None:
    report = await registry.test(redshift_spec)

    assert report["ok"] is True
    assert "PostgreSQL" in report["serverVersion"]
