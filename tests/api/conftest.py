"""An in-process server on a fresh store, and clients for its actors."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
import secret_watch
from cryptography.fernet import Fernet
from sqlalchemy import text
from sqlalchemy.engine import make_url

from pointsman.api.app import create_app
from pointsman.config import Settings
from pointsman.services.container import Services
from pointsman.services.setup import initialize
from pointsman.store.db import Store
from pointsman.store.migrate import upgrade
from pointsman.store.models import Base


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session", autouse=True)
def no_secret_in_any_log_line() -> Iterator[None]:
    """Every log line of the whole API run is checked for every secret sent."""
    handler = secret_watch.CapturingHandler()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield
    root.removeHandler(handler)
    root.setLevel(previous)
    leaks = [line for line in handler.lines if secret_watch.leaked_in(line)]
    assert not leaks, f"{len(leaks)} log line(s) carried a secret"


@pytest.fixture(scope="session")
def postgres_store() -> Iterator[str]:
    """One migrated PostgreSQL metadata store for the session."""
    admin_url = os.environ.get(
        "POINTSMAN_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    name = f"psm_store_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    store = Store(url)
    upgrade(store)
    store.dispose()
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def _emptied(url: str) -> str:
    store = Store(url)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with store.engine.begin() as conn:
        conn.execute(text(f"truncate {', '.join(tables)} restart identity cascade"))
        conn.execute(text("insert into config_state (id, version) values (1, 0)"))
    store.dispose()
    return url


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh metadata store: SQLite by default, PostgreSQL when
    POINTSMAN_TEST_STORE=postgres (CI runs the suite both ways)."""
    if os.environ.get("POINTSMAN_TEST_STORE", "sqlite") == "postgres":
        return _emptied(request.getfixturevalue("postgres_store"))
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def services(tmp_path: Path, store_url: str) -> Iterator[Services]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=store_url,
        secret_keys=(Fernet.generate_key().decode(),),
        rate_limit_per_minute=0,
    )
    services = Services.open(settings)
    yield services
    services.close()


@pytest.fixture
def org_token(services: Services) -> str:
    return initialize(services.store, "admin@example.com", "Admin")


@pytest.fixture
async def api(services: Services, org_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client authenticated with the organization key."""
    app = create_app(services)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=transport,
            base_url="http://pointsman.test",
            headers={"Authorization": f"Bearer {org_token}"},
            event_hooks=secret_watch.HOOKS,
        ) as client,
    ):
        yield client


@pytest.fixture
def anon(api: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same server, no token."""
    return httpx.AsyncClient(
        transport=api._transport,
        base_url=str(api.base_url),
        event_hooks=secret_watch.HOOKS,
    )


@pytest.fixture
def make_member(services: Services, api: httpx.AsyncClient):  # type: ignore[no-untyped-def]
    """A factory: a member user (not org admin) and a client with their PAT."""
    from pointsman.services.setup import ensure_admin
    from pointsman.services.tokens import create_token
    from pointsman.store import models

    clients: list[httpx.AsyncClient] = []

    def make(email: str, *, admin: bool = False) -> tuple[str, httpx.AsyncClient]:
        if admin:
            user_id = ensure_admin(services.store, email)
        else:
            with services.store.write() as session:
                user = models.User(
                    email=email, email_key=email.lower(), display_name=email
                )
                session.add(user)
                session.flush()
                user_id = user.id
        token = create_token(
            services.store, name=f"pat {email}", kind="personal", user_id=user_id
        )["token"]
        client = httpx.AsyncClient(
            transport=api._transport,
            base_url=str(api.base_url),
            headers={"Authorization": f"Bearer {token}"},
            event_hooks=secret_watch.HOOKS,
        )
        clients.append(client)
        return user_id, client

    return make
