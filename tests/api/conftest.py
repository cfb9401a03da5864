"""An in-process server on a fresh store, and clients for its actors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet

from pointsman.api.app import create_app
from pointsman.config import Settings
from pointsman.services.container import Services
from pointsman.services.setup import initialize


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def store_url(tmp_path: Path) -> str:
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
    async with app.router.lifespan_context(app), httpx.AsyncClient(
        transport=transport,
        base_url="http://pointsman.test",
        headers={"Authorization": f"Bearer {org_token}"},
    ) as client:
        yield client


@pytest.fixture
def anon(api: httpx.AsyncClient) -> httpx.AsyncClient:
    """The same server, no token."""
    return httpx.AsyncClient(transport=api._transport, base_url=str(api.base_url))


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
        )
        clients.append(client)
        return user_id, client

    return make

