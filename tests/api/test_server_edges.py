"""Health, the OpenAPI description, rate limiting, and secret handling."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography.fernet import Fernet
from helpers import assert_error

from pointsman.api.app import create_app
from pointsman.config import Settings
from pointsman.services.container import Services

pytestmark = pytest.mark.anyio


async def test_healthz_and_readyz_answer_ok(anon: httpx.AsyncClient) -> None:
    health = await anon.get("/healthz")
    ready = await anon.get("/readyz")

    assert health.json() == {"status": "ok"}
    assert ready.json() == {"status": "ok"}


async def test_readyz_is_503_on_an_unmigrated_store(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'empty.db'}",
        secret_keys=(Fernet.generate_key().decode(),),
    )
    services = Services.open(settings)
    transport = httpx.ASGITransport(app=create_app(services))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/readyz")
    services.close()

    assert response.status_code == 503
    assert "pointsman init" in response.json()["detail"]


async def test_openapi_marks_extensions(anon: httpx.AsyncClient) -> None:
    response = await anon.get("/api/openapi.json")

    paths = response.json()["paths"]
    assert (
        paths["/api/v1/connections/{id}/test"]["post"]["x-pointsman-extension"] is True
    )
    assert "x-pointsman-extension" not in paths["/api/v1/connections"]["post"]


async def test_the_rate_limit_answers_429_with_retry_after(
    api: httpx.AsyncClient,
) -> None:
    api._transport.app.state.rate_limiter.per_minute = 3  # type: ignore[attr-defined]

    statuses = [(await api.get("/api/v1/whoami")).status_code for _ in range(4)]
    response = await api.get("/api/v1/whoami")

    assert statuses == [200, 200, 200, 429]
    assert_error(response, 429, "Too Many Requests")
    assert int(response.headers["Retry-After"]) >= 1


async def test_an_unreadable_secret_names_the_connection(
    api: httpx.AsyncClient, services: Services
) -> None:
    created = await api.post(
        "/api/v1/connections",
        json={
            "dialect": "postgres",
            "name": "Keyed Elsewhere",
            "host": "127.0.0.1",
            "port": 5432,
            "database": "postgres",
            "username": "postgres",
            "passwordUnencrypted": "s3cret-value",
        },
    )
    from pointsman.crypto import SecretBox

    services.secrets = SecretBox([Fernet.generate_key().decode()])
    services.specs._box = services.secrets

    response = await api.post(
        "/api/v1/query/run",
        json={"query": {"connectionId": created.json()["data"], "sql": "select 1"}},
    )

    assert response.status_code == 500
    assert "Keyed Elsewhere" in response.json()["detail"]
    assert "s3cret-value" not in response.text


def test_secrets_decrypt_with_any_configured_key() -> None:
    from pointsman.crypto import SecretBox

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    sealed = SecretBox([old]).encrypt({"password": "pw"})

    opened = SecretBox([new, old]).decrypt(sealed, connection_name="c")

    assert opened == {"password": "pw"}


def test_the_generated_key_file_is_private(tmp_path: Path) -> None:
    from pointsman.crypto import load_keys

    load_keys([], tmp_path)

    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
