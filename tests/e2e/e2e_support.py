"""A real ``pointsman`` process driven over HTTP, and the databases it serves.

Nothing here imports the server: the tests see it only as a command and a
port, the way an operator and Omni's clients do.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

import httpx
import orjson
import psycopg
import pymysql
from psycopg import sql

# The console script beside the interpreter running the tests (the venv's).
POINTSMAN = Path(sys.executable).with_name("pointsman")
if not POINTSMAN.exists():
    POINTSMAN = Path(shutil.which("pointsman") or "pointsman")
STARTUP_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
CLIENT_TIMEOUT_SECONDS = 60.0
USER_ATTRIBUTES = "urn:omni:params:1.0:UserAttribute"
SCIM_PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ORDERS_SQL = "select id, served_by from orders order by id"

# The walkthrough's own password: PostgreSQL with trust auth ignores it.
WALKTHROUGH_PASSWORD = "mypassword"


def new_secret_key() -> str:
    """A Fernet key, as ``POINTSMAN_SECRET_KEY`` takes it."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# -- the server process -----------------------------------------------------------


def store_env(data_dir: Path, database_url: str, secret_key: str) -> dict[str, str]:
    """The environment of every ``pointsman`` command run against one store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POINTSMAN_")}
    env.update(
        POINTSMAN_DATA_DIR=str(data_dir),
        POINTSMAN_DATABASE_URL=database_url,
        POINTSMAN_SECRET_KEY=secret_key,
        # Every line reaches the captured log at once, not at exit.
        PYTHONUNBUFFERED="1",
    )
    return env


def pointsman_command(env: dict[str, str], *args: str) -> str:
    """Run one ``pointsman`` command to completion; its stdout."""
    done = subprocess.run(
        [str(POINTSMAN), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_SECONDS,
        check=False,
    )
    assert done.returncode == 0, (
        f"pointsman {' '.join(args)} exited {done.returncode}: {done.stderr}"
    )
    return done.stdout


def last_line(text: str) -> str:
    return text.strip().splitlines()[-1].strip()


def init_store(env: dict[str, str], admin_email: str = "admin@example.com") -> str:
    """``pointsman init``; the organization key it prints on its last line."""
    return last_line(pointsman_command(env, "init", "--admin-email", admin_email))


@dataclass
class ServerProcess:
    """One ``pointsman serve`` process, its store and its captured output."""

    url: str
    token: str
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes]

    def client(self, token: str | None = None, **options: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        return httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=CLIENT_TIMEOUT_SECONDS,
            **options,
        )

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_healthy(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"pointsman serve exited {self.process.returncode}:\n"
                    + self.log_text()
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"pointsman serve not healthy in time:\n{self.log_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def spawn_server(env: dict[str, str], token: str, log_path: Path) -> ServerProcess:
    """Start ``pointsman serve`` on a free port; stdout and stderr to log_path."""
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(POINTSMAN), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return ServerProcess(f"http://127.0.0.1:{port}", token, env, log_path, process)


@contextmanager
def running(*servers: ServerProcess) -> Iterator[None]:
    """Wait until every server answers /healthz; terminate them all on exit."""
    try:
        for server in servers:
            server.wait_healthy()
        yield
    finally:
        for server in servers:
            server.stop()


# -- requests ---------------------------------------------------------------------


def check(response: httpx.Response, status: int) -> httpx.Response:
    """The response, which must have this status."""
    request = response.request
    assert response.status_code == status, (
        f"{request.method} {request.url.path} -> {response.status_code}: "
        f"{response.text}"
    )
    return response


def expect(response: httpx.Response, status: int) -> Any:
    """The JSON body of a response that must have this status."""
    return check(response, status).json()


def ndjson(response: httpx.Response) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in response.text.splitlines() if line.strip()]


def job_line(response: httpx.Response) -> dict[str, Any]:
    """The finished job's line in a query/run answer."""
    jobs = [line for line in ndjson(response) if "job_id" in line]
    assert len(jobs) == 1, response.text
    return jobs[0]


def run_sql(
    client: httpx.Client, base_id: str, text: str, user_id: str | None = None
) -> httpx.Response:
    """query/run through a base, as ``user_id`` when given, rows as JSON."""
    body: dict[str, Any] = {
        "query": {"connectionId": base_id, "sql": text},
        "resultType": "json",
    }
    if user_id is not None:
        body["userId"] = user_id
    return client.post("/api/v1/query/run", json=body)


def served_by(response: httpx.Response) -> set[str]:
    """The databases named by the rows of an ``ORDERS_SQL`` answer."""
    check(response, 200)
    return {row["served_by"] for row in job_line(response)["result"]}


def create_attribute(client: httpx.Client, name: str = "environment") -> str:
    body = {"name": name, "label": name.title()}
    return str(expect(client.post("/api/v1/user-attributes", json=body), 201)["id"])


def create_user(client: httpx.Client, email: str, environment: str | None) -> str:
    """A SCIM user; ``environment`` unset when None."""
    attributes = {} if environment is None else {"environment": environment}
    body = {
        "userName": email,
        "displayName": email.split("@")[0],
        USER_ATTRIBUTES: attributes,
    }
    return str(expect(client.post("/api/scim/v2/Users", json=body), 201)["id"])


def set_environment(client: httpx.Client, user_id: str, value: str) -> None:
    """SCIM PATCH of one user attribute."""
    body = {
        "schemas": [SCIM_PATCH],
        "Operations": [
            {"op": "replace", "path": f"{USER_ATTRIBUTES}:environment", "value": value}
        ],
    }
    expect(client.patch(f"/api/scim/v2/Users/{user_id}", json=body), 200)


# -- the walkthrough --------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """A database made by the test, with what a connection body needs."""

    host: str
    port: int
    database: str
    username: str
    password: str


def connection_body(
    dialect: str, name: str, target: Target, **changes: Any
) -> dict[str, Any]:
    """The walkthrough's connection body, pointed at a real database."""
    body: dict[str, Any] = {
        "dialect": dialect,
        "name": name,
        "host": target.host,
        "port": target.port,
        "database": target.database,
        "username": target.username,
        "passwordUnencrypted": target.password,
        "includeSchemas": "public",
        "queryTimeoutSeconds": 900,
    }
    return body | changes


def create_connection(client: httpx.Client, body: dict[str, Any]) -> str:
    return str(expect(client.post("/api/v1/connections", json=body), 201)["data"])


@dataclass(frozen=True)
class Walkthrough:
    """The five requests' outcome: dev is the base, prod its environment."""

    base_id: str
    prod_id: str
    link_id: str
    statuses: tuple[int, ...]
    dev: Target
    prod: Target


def run_walkthrough(
    client: httpx.Client, dialect: str, label: str, dev: Target, prod: Target
) -> Walkthrough:
    """The seed's five requests, as written but for host, port, database,
    username and password."""
    statuses: list[int] = []

    def send(method: str, path: str, body: dict[str, Any], status: int) -> Any:
        response = client.request(method, path, json=body)
        statuses.append(response.status_code)
        return expect(response, status)

    connections = "/api/v1/connections"
    dev_body = connection_body(dialect, f"{label} (Development)", dev)
    prod_body = connection_body(dialect, f"{label} (Production)", prod)
    base = send("POST", connections, dev_body, 201)["data"]
    prod_id = send("POST", connections, prod_body, 201)["data"]
    link = {"baseConnectionId": base, "environmentConnectionIds": prod_id}
    linked = send("POST", "/api/v1/connection-environments", link, 201)
    attribute = {
        "userAttributeNameForConnectionEnvironments": "environment",
        "userAttributeValuesForDefaultEnvironment": "dev",
    }
    send("PATCH", f"{connections}/{base}", attribute, 200)
    values = {"userAttributeValues": "prod"}
    send("PUT", f"/api/v1/connection-environments/{prod_id}", values, 200)
    return Walkthrough(
        base_id=base,
        prod_id=prod_id,
        link_id=linked["data"][0]["id"],
        statuses=tuple(statuses),
        dev=dev,
        prod=prod,
    )


# -- databases on the local servers -------------------------------------------------


class AdminParams(Protocol):
    """What the root conftest's ``*_admin_params`` fixtures give."""

    host: str
    port: int
    user: str
    password: str


def postgres_connect(
    params: AdminParams, dbname: str = "postgres"
) -> psycopg.Connection:
    return psycopg.connect(
        host=params.host,
        port=params.port,
        user=params.user,
        password=params.password or None,
        dbname=dbname,
        connect_timeout=3,
        autocommit=True,
    )


def mysql_connect(
    params: AdminParams, database: str | None = None
) -> pymysql.Connection:
    return pymysql.connect(
        host=params.host,
        port=params.port,
        user=params.user,
        password=params.password,
        database=database,
        connect_timeout=3,
        autocommit=True,
    )


class Databases:
    """Things made on a database server for the tests, undone by :meth:`close`
    in reverse order."""

    def __init__(self, params: AdminParams) -> None:
        self.params = params
        self._cleanups: list[Callable[[], None]] = []

    def close(self) -> None:
        while self._cleanups:
            self._cleanups.pop()()


class PostgresDatabases(Databases):
    def create(
        self, password: str = WALKTHROUGH_PASSWORD, *, orders: bool = True
    ) -> Target:
        """A database with an ``orders`` table whose rows name it. Under trust
        auth ``password`` is sent and ignored; a server that checks passwords
        is given the admin's."""
        name = unique("pointsman_e2e")
        with postgres_connect(self.params) as conn:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        self._cleanups.append(lambda: self._drop(name))
        if orders:
            with postgres_connect(self.params, name) as conn:
                conn.execute(
                    "create table orders (id integer primary key, "
                    "served_by text not null)"
                )
                conn.execute("insert into orders values (1, %s), (2, %s)", (name, name))
        return Target(
            self.params.host,
            self.params.port,
            name,
            self.params.user,
            self.params.password or password,
        )

    def url(self, database: str) -> str:
        """A metadata-store URL for ``database``, as an operator writes it."""
        secret = self.params.password
        password = f":{quote(secret, safe='')}" if secret else ""
        return (
            f"postgresql://{self.params.user}{password}"
            f"@{self.params.host}:{self.params.port}/{database}"
        )

    def running_statements(self, database: str, marker: str) -> int:
        """How many active statements in ``database`` contain ``marker``."""
        with postgres_connect(self.params) as conn:
            row = conn.execute(
                "select count(*) from pg_stat_activity where datname = %s"
                " and state = 'active' and query like %s"
                " and pid <> pg_backend_pid()",
                (database, f"%{marker}%"),
            ).fetchone()
        return int(row[0]) if row else 0

    def _drop(self, name: str) -> None:
        with postgres_connect(self.params) as conn:
            drop = sql.SQL("drop database if exists {} with (force)")
            conn.execute(drop.format(sql.Identifier(name)))


class MariaDBDatabases(Databases):
    def create_user(self, password: str) -> str:
        """A user that must log in with ``password``."""
        name = unique("pm_e2e")
        self._execute("create user %s@%s identified by %s", (name, "%", password))
        self._cleanups.append(
            lambda: self._execute("drop user if exists %s@%s", (name, "%"))
        )
        return name

    def create(self, user: str, password: str) -> Target:
        """A database with an ``orders`` table whose rows name it, that
        ``user`` (logging in with ``password``) may use."""
        name = unique("pointsman_e2e")
        self._execute(f"create database `{name}`")
        self._cleanups.append(
            lambda: self._execute(f"drop database if exists `{name}`")
        )
        self._execute(f"grant all privileges on `{name}`.* to %s@%s", (user, "%"))
        self._execute(
            "create table orders (id integer primary key, "
            "served_by varchar(100) not null)",
            database=name,
        )
        self._execute(
            "insert into orders values (1, %s), (2, %s)", (name, name), database=name
        )
        return Target(self.params.host, self.params.port, name, user, password)

    def running_statements(self, database: str, marker: str) -> int:
        """How many statements in ``database`` contain ``marker``."""
        conn = mysql_connect(self.params)
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "select count(*) from information_schema.processlist"
                    " where db = %s and info like %s and id <> connection_id()",
                    (database, f"%{marker}%"),
                )
                row = cursor.fetchone()
        finally:
            conn.close()
        return int(row[0]) if row else 0

    def _execute(
        self,
        statement: str,
        args: tuple[Any, ...] | None = None,
        database: str | None = None,
    ) -> None:
        conn = mysql_connect(self.params, database)
        try:
            with conn.cursor() as cursor:
                cursor.execute(statement, args)
        finally:
            conn.close()
