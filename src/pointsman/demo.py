"""``pointsman demo``: the walkthrough, end to end, on embedded databases.

A server starts on a free local port with a throwaway store. Two SQLite
files play "dev" and "prod" (same table, different rows). The walkthrough's
five requests go over HTTP as written, with only the host, dialect and
database fields changed; then users with different ``environment`` values
run the same SQL and the table shows where each query went and why.
"""

from __future__ import annotations

import shutil
import socket
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn
from cryptography.fernet import Fernet

from pointsman.api.app import create_app
from pointsman.config import Settings
from pointsman.services.container import Services
from pointsman.services.setup import initialize

SQL = "select id, customer, amount from orders order by id"
ROWS = {
    "dev": [(1, "test-customer-a", 10.0), (2, "test-customer-b", 20.0)],
    "prod": [(1, "Acme Corp", 1250.0), (2, "Globex", 980.5)],
}
USERS = [
    ("prod.analyst@example.com", "Prod Analyst", "prod"),
    ("dev.engineer@example.com", "Dev Engineer", "dev"),
    ("qa.tester@example.com", "QA Tester", "qa"),
    ("new.hire@example.com", "New Hire", None),
]


def make_database(path: Path, rows: list[tuple[int, str, float]]) -> None:
    with sqlite3.connect(path) as db:
        db.execute(
            "create table orders (id integer primary key, customer text, amount real)"
        )
        db.executemany("insert into orders values (?, ?, ?)", rows)


class BackgroundServer:
    """uvicorn on a socket bound to a free local port, in a thread."""

    def __init__(self, services: Services):
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        config = uvicorn.Config(create_app(services), log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the demo server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.socket.close()


def walkthrough(client: httpx.Client, dev: Path, prod: Path) -> str:
    """The guide's five requests; returns the base connection id."""

    def connection(name: str, path: Path) -> dict[str, Any]:
        return {
            "dialect": "sqlite",
            "name": name,
            "port": 5432,
            "database": str(path),
            "username": "dbuser",
            "passwordUnencrypted": "mypassword",
            "includeSchemas": "public",
            "queryTimeoutSeconds": 900,
        }

    base = step(
        client, "POST", "/api/v1/connections", connection("SQLite (Development)", dev)
    )["data"]
    prod_id = step(
        client, "POST", "/api/v1/connections", connection("SQLite (Production)", prod)
    )["data"]
    step(
        client,
        "POST",
        "/api/v1/connection-environments",
        {"baseConnectionId": base, "environmentConnectionIds": prod_id},
    )
    step(
        client,
        "PATCH",
        f"/api/v1/connections/{base}",
        {
            "userAttributeNameForConnectionEnvironments": "environment",
            "userAttributeValuesForDefaultEnvironment": "dev",
        },
    )
    step(
        client,
        "PUT",
        f"/api/v1/connection-environments/{prod_id}",
        {"userAttributeValues": "prod"},
    )
    return str(base)


def step(client: httpx.Client, method: str, path: str, body: dict[str, Any]) -> Any:
    response = client.request(method, path, json=body)
    print(f"  {method:5} {path:58} -> {response.status_code}")
    if response.status_code >= 300:
        raise RuntimeError(f"{method} {path} failed: {response.text}")
    return response.json()


def create_users(client: httpx.Client) -> list[tuple[str, str | None, str]]:
    created = []
    for email, name, value in USERS:
        attributes = {"environment": value} if value is not None else {}
        body = {
            "userName": email,
            "displayName": name,
            "urn:omni:params:1.0:UserAttribute": attributes,
        }
        user = step(client, "POST", "/api/scim/v2/Users", body)
        created.append((email, value, user["id"]))
    return created


def run_as(client: httpx.Client, base: str, user_id: str) -> dict[str, Any]:
    body = {
        "query": {"connectionId": base, "sql": SQL},
        "userId": user_id,
        "resultType": "json",
    }
    response = client.post("/api/v1/query/run", json=body)
    lines = [orjson.loads(line) for line in response.text.splitlines() if line]
    if response.status_code != 200:
        raise RuntimeError(f"query failed: {response.text}")
    return next(line for line in lines if "job_id" in line)


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print(
            "  "
            + " | ".join(
                cell.ljust(width) for cell, width in zip(row, widths, strict=True)
            )
        )
        if index == 0:
            print("  " + "-+-".join("-" * width for width in widths))


def run_demo(keep: bool = False) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="pointsman-demo-"))
    try:
        dev, prod = workdir / "dev.sqlite", workdir / "prod.sqlite"
        make_database(dev, ROWS["dev"])
        make_database(prod, ROWS["prod"])
        settings = Settings(
            data_dir=workdir,
            database_url=f"sqlite:///{workdir / 'store.db'}",
            secret_keys=(Fernet.generate_key().decode(),),
            rate_limit_per_minute=0,
        )
        services = Services.open(settings)
        token = initialize(services.store, "admin@example.com", "Demo Admin")
        with BackgroundServer(services) as url:
            print(f"pointsman demo server at {url} (store in {workdir})\n")
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=url, headers=headers, timeout=60) as client:
                print("Define the user attribute the base routes on:")
                step(
                    client,
                    "POST",
                    "/api/v1/user-attributes",
                    {"name": "environment", "label": "Environment"},
                )
                print("\nThe walkthrough:")
                base = walkthrough(client, dev, prod)
                print("\nUsers:")
                users = create_users(client)
                print(f"\nThe same SQL as each user: {SQL}\n")
                table = [
                    [
                        "user",
                        "environment",
                        "served by",
                        "source",
                        "reason",
                        "first rows",
                    ]
                ]
                names = connection_names(client)
                for email, value, user_id in users:
                    job = run_as(client, base, user_id)
                    route = job["route"]
                    first = ", ".join(row["customer"] for row in job["result"][:2])
                    table.append(
                        [
                            email,
                            value or "(unset)",
                            names[route["connectionId"]],
                            route["source"],
                            route["reason"],
                            first,
                        ]
                    )
                print_table(table)
        services.close()
        print("\nDone: prod users read prod rows; everyone else reads the base (dev).")
        return 0
    finally:
        if keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def connection_names(client: httpx.Client) -> dict[str, str]:
    listed = client.get("/api/v1/connections").json()["connections"]
    return {item["id"]: item["name"] for item in listed}
