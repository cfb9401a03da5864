"""An in-process server on a fresh SQLite store, for the end-to-end routing
tests (a minimal copy of ``tests/api/conftest.py``, whose fixtures a sibling
directory cannot import)."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from hypothesis import configuration

from pointsman.api.app import create_app
from pointsman.config import Settings
from pointsman.services.container import Services
from pointsman.services.setup import initialize

# Hypothesis caches what it learns from the source under its home directory:
# keep that out of the working tree (the tests keep no example database).
configuration.set_hypothesis_home_dir(
    Path(tempfile.gettempdir()) / "pointsman-routing-hypothesis"
)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'store.db'}",
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
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://pointsman.test",
            headers={"Authorization": f"Bearer {org_token}"},
        ) as client,
    ):
        yield client
