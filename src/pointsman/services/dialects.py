"""What each dialect needs when a connection is created."""

from __future__ import annotations

from dataclasses import dataclass

SERVER_FIELDS = ("host", "port", "database", "username", "passwordUnencrypted")


@dataclass(frozen=True)
class DialectRules:
    required: tuple[str, ...]
    secrets: frozenset[str] = frozenset({"passwordUnencrypted"})
    family: str | None = None  # dialects of one family may be linked together


RULES: dict[str, DialectRules] = {
    "postgres": DialectRules(SERVER_FIELDS),
    # One wire protocol: a MariaDB environment may serve a MySQL base.
    "mysql": DialectRules(SERVER_FIELDS, family="mysql"),
    "mariadb": DialectRules(SERVER_FIELDS, family="mysql"),
    "redshift": DialectRules(SERVER_FIELDS),
    "clickhouse": DialectRules(SERVER_FIELDS),
    "trino": DialectRules(SERVER_FIELDS),
    "exasol": DialectRules(SERVER_FIELDS),
    "starrocks": DialectRules(SERVER_FIELDS),
    "sap_hana": DialectRules(SERVER_FIELDS),
    "singlestore": DialectRules(SERVER_FIELDS),
    # File databases take no password; one sent (as the walkthrough does) is
    # kept encrypted and never used.
    "sqlite": DialectRules(("database",)),
    "duckdb": DialectRules(("database",)),
    "motherduck": DialectRules(("passwordUnencrypted",)),
    "snowflake": DialectRules(
        ("host", "warehouse", "username"),
        secrets=frozenset(
            {"passwordUnencrypted", "privateKey", "oauthClientSecretUnencrypted"}
        ),
    ),
    "bigquery": DialectRules(("passwordUnencrypted", "region", "database")),
    "databricks": DialectRules(
        ("host", "warehouse", "passwordUnencrypted"),
        secrets=frozenset({"passwordUnencrypted", "oauthClientSecretUnencrypted"}),
    ),
    "databricks_lakebase": DialectRules(SERVER_FIELDS),
    "mssql": DialectRules((*SERVER_FIELDS, "defaultSchema"), family="sqlserver"),
    "sqlserver": DialectRules((*SERVER_FIELDS, "defaultSchema"), family="sqlserver"),
    "athena": DialectRules(("region", "database")),
    "oracle": DialectRules((*SERVER_FIELDS, "acceptsLicense")),
}

# Secret request fields and the names they are stored under once encrypted.
SECRET_FIELDS = {
    "passwordUnencrypted": "password",
    "privateKey": "privateKey",
    "oauthClientSecretUnencrypted": "oauthClientSecret",
}

# Dialect-specific, non-secret fields kept as given and echoed back on GET.
OPTION_FIELDS = (
    "warehouse",
    "hostOverride",
    "region",
    "maxBillingBytes",
    "scratchSchema",
    "systemTimezone",
    "queryTimezone",
    "allowsUserSpecificTimezones",
    "trustServerCertificate",
    "authenticationType",
    "awsRoleArn",
    "useMachineAuth",
    "oauthClientId",
    "externalOauthAuthorizationUrl",
    "externalOauthTokenUrl",
    "externalOauthAudience",
    "includeOtherCatalogs",
    "offloadedSchemas",
    "enableDbSemanticLayerIntegration",
    "enableDbSemanticLayerTopics",
    "inferRelationshipsFromColumnNames",
    "inferRelationshipsFromForeignKeys",
    "alwaysScopeViewNames",
    "acceptsLicense",
    "environmentConnectionSwitchesSchemaModel",
    "poolSize",
    "maxOverflow",
    "acquireTimeoutSeconds",
    "maxConcurrentQueries",
    "maxQueuedQueries",
)


def family(dialect: str) -> str:
    """Dialects that are one database under two names compare equal."""
    rules = RULES.get(dialect)
    return rules.family if rules is not None and rules.family else dialect
