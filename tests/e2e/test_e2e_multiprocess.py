"""Two ``pointsman serve`` processes sharing one PostgreSQL metadata store
(and one secret key): a configuration change made through one of them
routes the very next query on the other, with no pause in between."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from e2e_support import (
    ORDERS_SQL,
    PostgresDatabases,
    Walkthrough,
    create_attribute,
    create_user,
    expect,
    init_store,
    new_secret_key,
    run_sql,
    run_walkthrough,
    running,
    served_by,
    set_environment,
    spawn_server,
    store_env,
    unique,
)


@dataclass(frozen=True)
class Replicas:
    a: httpx.Client
    b: httpx.Client
    walkthrough: Walkthrough


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, postgres_databases: PostgresDatabases
) -> Iterator[Replicas]:
    """Processes A and B on one store, the walkthrough done through A."""
    store_url = postgres_databases.url(postgres_databases.create(orders=False).database)
    secret_key = new_secret_key()
    root = tmp_path_factory.mktemp("replicas")
    env_a = store_env(root / "a", store_url, secret_key)
    env_b = store_env(root / "b", store_url, secret_key)
    token = init_store(env_a)
    server_a = spawn_server(env_a, token, root / "a.log")
    server_b = spawn_server(env_b, token, root / "b.log")

    with running(server_a, server_b), server_a.client() as a, server_b.client() as b:
        create_attribute(a)
        walkthrough = run_walkthrough(
            a,
            "postgres",
            "Postgres",
            postgres_databases.create(),
            postgres_databases.create(),
        )
        yield Replicas(a, b, walkthrough)


def test_connections_created_through_one_process_serve_queries_on_the_other(
    replicas: Replicas,
) -> None:
    user_id = create_user(replicas.a, f"{unique('prod')}@example.com", "prod")

    response = run_sql(replicas.b, replicas.walkthrough.base_id, ORDERS_SQL, user_id)

    assert served_by(response) == {replicas.walkthrough.prod.database}


def test_environment_values_put_through_one_process_route_the_next_query_on_the_other(
    replicas: Replicas,
) -> None:
    walkthrough = replicas.walkthrough
    value = unique("qa")
    user_id = create_user(replicas.a, f"{value}@example.com", value)
    before = run_sql(replicas.b, walkthrough.base_id, ORDERS_SQL, user_id)
    assert served_by(before) == {walkthrough.dev.database}

    put = replicas.a.put(
        f"/api/v1/connection-environments/{walkthrough.link_id}",
        json={"userAttributeValues": ["prod", value]},
    )
    after = run_sql(replicas.b, walkthrough.base_id, ORDERS_SQL, user_id)

    expect(put, 200)
    assert served_by(after) == {walkthrough.prod.database}


def test_a_user_value_patched_through_one_process_routes_the_next_query_on_the_other(
    replicas: Replicas,
) -> None:
    walkthrough = replicas.walkthrough
    user_id = create_user(replicas.a, f"{unique('dev')}@example.com", "dev")
    before = run_sql(replicas.b, walkthrough.base_id, ORDERS_SQL, user_id)
    assert served_by(before) == {walkthrough.dev.database}

    set_environment(replicas.a, user_id, "prod")
    after = run_sql(replicas.b, walkthrough.base_id, ORDERS_SQL, user_id)

    assert served_by(after) == {walkthrough.prod.database}


def test_a_timeout_lowered_through_one_process_applies_to_the_next_query_on_the_other(
    replicas: Replicas,
) -> None:
    base_id = replicas.walkthrough.base_id
    warm = run_sql(replicas.b, base_id, ORDERS_SQL)
    assert served_by(warm) == {replicas.walkthrough.dev.database}

    patch = replicas.a.patch(
        f"/api/v1/connections/{base_id}", json={"queryTimeoutSeconds": 1}
    )
    slow = run_sql(replicas.b, base_id, "select pg_sleep(3)")

    expect(patch, 200)
    assert expect(slow, 408)["status"] == 408
