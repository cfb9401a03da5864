"""How SQLAlchemy reaches each optional dialect, built from a ConnectionSpec.

A :class:`DialectTarget` holds a ``sqlalchemy.engine.URL`` object (never a
rendered string: ``str(url)`` and ``repr(url)`` mask the password) and the
keyword arguments its driver takes. Secrets that are not a password (a
Snowflake private key, a BigQuery service-account key) travel only in those
keyword arguments, which no ``repr`` shows.

Nothing here imports a driver: building a target only needs SQLAlchemy
itself and ``cryptography``, so it works (and is tested) without the extras.

Per dialect, the package of its extra and how the query timeout is enforced
(see ``sqlalchemy_engine`` for the client side of it):

========== ======================== =========================================
dialect    extra package            query timeout
========== ======================== =========================================
snowflake  snowflake-sqlalchemy     server: STATEMENT_TIMEOUT_IN_SECONDS
bigquery   sqlalchemy-bigquery      none on the server: the job is abandoned
databricks databricks-sqlalchemy    server: STATEMENT_TIMEOUT, cursor.cancel()
clickhouse clickhouse-connect       server: max_execution_time
mssql      pymssql (FreeTDS inside) driver: pymssql ``timeout``
trino      trino[sqlalchemy]        server: query_max_run_time, cursor.cancel()
athena     pyathena[sqlalchemy]     cursor.cancel() (StopQueryExecution)
========== ======================== =========================================
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

from cryptography.hazmat.primitives import serialization
from sqlalchemy.engine import URL

from pointsman.engines import failures
from pointsman.engines.spec import ConnectionSpec

# The pip extra (``pointsman[<extra>]``) that brings each dialect's driver.
EXTRAS = {
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "databricks": "databricks",
    "clickhouse": "clickhouse",
    "mssql": "mssql",
    "trino": "trino",
    "athena": "athena",
}
ALIASES = {"sqlserver": "mssql"}

DEFAULT_PORTS = {"clickhouse": 8123, "mssql": 1433, "trino": 8080}
TLS_PORTS = frozenset({443, 8443})
# How much longer than the query timeout a socket read may block, so that
# the server's own timeout error arrives before the socket gives up.
READ_GRACE_SECONDS = 5
APPLICATION = "pointsman"


@dataclass(frozen=True)
class DialectTarget:
    """A SQLAlchemy URL and driver arguments for one connection."""

    dialect: str
    url: URL
    connect_args: Mapping[str, Any] = field(default_factory=dict, repr=False)
    engine_kwargs: Mapping[str, Any] = field(default_factory=dict, repr=False)
    # A statement answering the server's version; None: "select 1" and label.
    version_sql: str | None = "select version()"
    label: str = ""

    @property
    def extra(self) -> str:
        return EXTRAS[self.dialect]


def canonical(dialect: str) -> str:
    key = dialect.strip().lower()
    return ALIASES.get(key, key)


def build_target(spec: ConnectionSpec) -> DialectTarget:
    """The target for ``spec``; ``DatabaseUnavailableError`` if a secret it
    needs cannot be read (the message never quotes the secret)."""
    dialect = canonical(spec.dialect)
    builder = _BUILDERS.get(dialect)
    if builder is None:
        raise ValueError(f"no SQLAlchemy target for dialect {spec.dialect!r}")
    return builder(spec)


# -- helpers ------------------------------------------------------------------


def _option(spec: ConnectionSpec, name: str) -> Any:
    value = spec.options.get(name)
    return None if value in (None, "") else value


def _present(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value not in (None, "")}


def _trusts_any_certificate(spec: ConnectionSpec) -> bool:
    value = spec.options.get("trustServerCertificate")
    return value is True or str(value).lower() == "true"


def _path(*parts: str | None, quote: bool = False) -> str | None:
    """``database/schema`` as the dialects split it (trino unquotes each part;
    snowflake on SQLAlchemy 2.1 takes them raw)."""
    given = [quote_plus(part) if quote else part for part in parts if part]
    return "/".join(given) or None


# -- snowflake ------------------------------------------------------------------


def private_key_der(spec: ConnectionSpec) -> bytes:
    """The spec's ``privateKey`` (PEM, headers optional) as PKCS#8 DER bytes."""
    text = spec.secrets.get("privateKey", "").strip()
    if "-----BEGIN" not in text:
        body = "".join(text.split())
        text = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"
    try:
        key = serialization.load_pem_private_key(text.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise failures.unavailable(spec, "the private key cannot be read") from exc
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _uses_key_pair(spec: ConnectionSpec) -> bool:
    if not spec.secrets.get("privateKey"):
        return False
    kind = str(_option(spec, "authenticationType") or "").lower()
    return not spec.password or "key" in kind


def _snowflake(spec: ConnectionSpec) -> DialectTarget:
    key_pair = _uses_key_pair(spec)
    database = _path(spec.database, spec.default_schema) if spec.database else None
    url = URL.create(
        "snowflake",
        username=spec.username,
        password=None if key_pair else spec.password,
        host=spec.host,
        database=database,
        query=_present({"warehouse": _option(spec, "warehouse")}),
    )
    connect_args: dict[str, Any] = {
        "autocommit": True,
        "login_timeout": spec.connect_timeout_seconds,
        "application": APPLICATION,
        "session_parameters": {
            "STATEMENT_TIMEOUT_IN_SECONDS": spec.query_timeout_seconds
        },
    }
    if key_pair:
        connect_args["private_key"] = private_key_der(spec)
        connect_args["authenticator"] = "SNOWFLAKE_JWT"
    host_override = _option(spec, "hostOverride")
    if host_override:
        connect_args["account"] = spec.host
        connect_args["host"] = host_override
    return DialectTarget(
        "snowflake",
        url,
        connect_args,
        version_sql="select current_version()",
        label="Snowflake",
    )


# -- bigquery -------------------------------------------------------------------


def service_account_info(spec: ConnectionSpec) -> dict[str, Any]:
    """The service-account key sent as ``passwordUnencrypted`` (a JSON text)."""
    try:
        info = json.loads(spec.password or "")
    except ValueError as exc:
        reason = "the service account key is not valid JSON"
        raise failures.unavailable(spec, reason) from exc
    if not isinstance(info, dict):
        raise failures.unavailable(spec, "the service account key is not an object")
    return info


def _bigquery(spec: ConnectionSpec) -> DialectTarget:
    billing = str(_option(spec, "maxBillingBytes") or "").strip()
    url = URL.create(
        "bigquery",
        host=spec.database,  # the project id
        database=spec.default_schema,  # the default dataset
        query=_present(
            {
                "location": _option(spec, "region"),
                "maximum_bytes_billed": billing if billing.isdigit() else None,
            }
        ),
    )
    return DialectTarget(
        "bigquery",
        url,
        engine_kwargs={"credentials_info": service_account_info(spec)},
        version_sql=None,
        label="BigQuery",
    )


# -- databricks -----------------------------------------------------------------


def _databricks(spec: ConnectionSpec) -> DialectTarget:
    url = URL.create(
        "databricks",
        username="token",
        password=spec.password,  # a personal access token
        host=spec.host,
        query=_present(
            {
                "http_path": _option(spec, "warehouse"),
                "catalog": spec.database,
                "schema": spec.default_schema,
            }
        ),
    )
    connect_args = {
        # The connector retries a failed request for 900 s by default.
        "_retry_stop_after_attempts_duration": float(spec.connect_timeout_seconds),
        "session_configuration": {"STATEMENT_TIMEOUT": str(spec.query_timeout_seconds)},
    }
    return DialectTarget("databricks", url, connect_args, label="Databricks")


# -- clickhouse -----------------------------------------------------------------


def _clickhouse(spec: ConnectionSpec) -> DialectTarget:
    port = spec.port or DEFAULT_PORTS["clickhouse"]
    url = URL.create(
        "clickhousedb",
        username=spec.username,
        password=spec.password,
        host=spec.host,
        port=port,
        database=spec.database,
    )
    connect_args: dict[str, Any] = {
        "secure": port in TLS_PORTS,
        "connect_timeout": spec.connect_timeout_seconds,
        "send_receive_timeout": spec.query_timeout_seconds + READ_GRACE_SECONDS,
        "client_name": APPLICATION,
        # Not a client parameter, so clickhouse-connect sends it as a setting.
        "max_execution_time": spec.query_timeout_seconds,
    }
    if _trusts_any_certificate(spec):
        connect_args["verify"] = False
    return DialectTarget("clickhouse", url, connect_args, label="ClickHouse")


# -- SQL Server -----------------------------------------------------------------


def _mssql(spec: ConnectionSpec) -> DialectTarget:
    url = URL.create(
        "mssql+pymssql",
        username=spec.username,
        password=spec.password,
        host=spec.host,
        port=spec.port or DEFAULT_PORTS["mssql"],
        database=spec.database,
    )
    connect_args = {
        "login_timeout": spec.connect_timeout_seconds,
        "timeout": spec.query_timeout_seconds,
        "autocommit": True,
        "appname": APPLICATION,
    }
    return DialectTarget(
        "mssql",
        url,
        connect_args,
        version_sql="select cast(serverproperty('ProductVersion') as varchar(64))",
        label="SQL Server",
    )


# -- trino ------------------------------------------------------------------------


def _trino(spec: ConnectionSpec) -> DialectTarget:
    port = spec.port or DEFAULT_PORTS["trino"]
    https = bool(spec.password) or port in TLS_PORTS
    url = URL.create(
        "trino",
        username=spec.username,
        password=spec.password,
        host=spec.host,
        port=port,
        database=_path(spec.database, spec.default_schema, quote=True),
    )
    connect_args: dict[str, Any] = {
        "http_scheme": "https" if https else "http",
        "source": APPLICATION,
        "request_timeout": float(spec.connect_timeout_seconds),
        "session_properties": {"query_max_run_time": f"{spec.query_timeout_seconds}s"},
    }
    if _trusts_any_certificate(spec):
        connect_args["verify"] = False
    return DialectTarget("trino", url, connect_args, label="Trino")


# -- athena -----------------------------------------------------------------------


def _athena(spec: ConnectionSpec) -> DialectTarget:
    region = _option(spec, "region")
    url = URL.create(
        "awsathena+rest",
        # An access key pair if given; otherwise boto3's default credentials.
        username=spec.username or None,
        password=spec.password or None,
        host=f"athena.{region}.amazonaws.com" if region else None,
        port=443,
        database=spec.default_schema or "default",
        query=_present(
            {
                "catalog_name": spec.database,  # the data catalog
                # Not (yet) fields of the create body: honoured if present.
                "s3_staging_dir": _option(spec, "s3StagingDir"),
                "work_group": _option(spec, "workGroup"),
            }
        ),
    )
    connect_args = _present(
        {"region_name": region, "role_arn": _option(spec, "awsRoleArn")}
    )
    return DialectTarget("athena", url, connect_args, version_sql=None, label="Athena")


_BUILDERS: dict[str, Callable[[ConnectionSpec], DialectTarget]] = {
    "snowflake": _snowflake,
    "bigquery": _bigquery,
    "databricks": _databricks,
    "clickhouse": _clickhouse,
    "mssql": _mssql,
    "trino": _trino,
    "athena": _athena,
}
