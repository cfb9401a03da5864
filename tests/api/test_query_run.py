"""query/run, query/wait, the route explanation and the query log (spec §6–7),
in process, on SQLite files that each hold a row naming themselves."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.ipc
import pytest
from helpers import assert_error, create_attribute, create_user, set_attributes

pytestmark = pytest.mark.anyio

SQL = "select name from marker"


def make_database(path: Path, name: str) -> str:
    with sqlite3.connect(path) as db:
        db.execute("create table marker (name text)")
        db.execute("insert into marker values (?)", (name,))
    return str(path)


async def connection(
    api: httpx.AsyncClient, tmp_path: Path, name: str, **extra: Any
) -> str:
    body = {
        "dialect": "sqlite",
        "name": name,
        "database": make_database(tmp_path / f"{name}.sqlite", name),
        **extra,
    }
    response = await api.post("/api/v1/connections", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["data"])


@pytest.fixture
async def walkthrough(api: httpx.AsyncClient, tmp_path: Path) -> dict[str, str]:
    """dev (base) and prod (environment), routed on `environment`, default dev."""
    await create_attribute(api, "environment")
    dev = await connection(api, tmp_path, "dev")
    prod = await connection(api, tmp_path, "prod")
    linked = await api.post(
        "/api/v1/connection-environments",
        json={"baseConnectionId": dev, "environmentConnectionIds": prod},
    )
    await api.patch(
        f"/api/v1/connections/{dev}",
        json={
            "userAttributeNameForConnectionEnvironments": "environment",
            "userAttributeValuesForDefaultEnvironment": "dev",
        },
    )
    await api.put(
        f"/api/v1/connection-environments/{prod}", json={"userAttributeValues": "prod"}
    )
    link_id = linked.json()["data"][0]["id"]
    return {"dev": dev, "prod": prod, "link": link_id}


def lines_of(response: httpx.Response) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in response.text.splitlines() if line.strip()]


async def run(api: httpx.AsyncClient, base: str, **fields: Any) -> httpx.Response:
    body = {"query": {"connectionId": base, "sql": fields.pop("sql", SQL)}, **fields}
    return await api.post("/api/v1/query/run", json=body)


def marker(response: httpx.Response) -> str:
    job = lines_of(response)[1]
    return str(job["result"][0]["name"])


async def test_a_prod_user_reads_prod(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    user = await create_user(api, "p@example.com", {"environment": "prod"})

    response = await run(api, walkthrough["dev"], userId=user["id"], resultType="json")

    assert marker(response) == "prod"
    route = lines_of(response)[1]["route"]
    assert route == {
        "baseConnectionId": walkthrough["dev"],
        "connectionId": walkthrough["prod"],
        "connectionEnvironmentId": walkthrough["link"],
        "source": "user_attribute",
        "reason": 'environment = "prod" matched environment prod',
    }
    assert response.headers["X-Pointsman-Connection-Id"] == walkthrough["prod"]


@pytest.mark.parametrize("value", ["dev", "qa", None])
async def test_dev_unmatched_and_unset_users_read_the_base(
    api: httpx.AsyncClient, walkthrough: dict[str, str], value: str | None
) -> None:
    attributes = {"environment": value} if value else {}
    user = await create_user(api, "u@example.com", attributes)

    response = await run(api, walkthrough["dev"], userId=user["id"], resultType="json")

    assert marker(response) == "dev"
    assert lines_of(response)[1]["route"]["source"] == "base"


async def test_the_response_is_ndjson_with_the_footer_last(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    response = await run(api, walkthrough["dev"], resultType="json")

    assert response.headers["content-type"].startswith("application/x-ndjson")
    submitted, job, footer = lines_of(response)
    [(job_id, client_id)] = submitted["jobs_submitted"].items()
    assert job["job_id"] == job_id
    assert job["client_result_id"] == client_id
    assert job["status"] == "COMPLETE"
    assert job["summary"]["display_sql"] == SQL
    assert job["summary"]["fields"] == [{"name": "name", "type": "string"}]
    assert job["summary"]["row_count"] == 1
    assert footer == {"remaining_job_ids": [], "timed_out": "false"}


async def test_the_default_result_is_a_base64_arrow_stream(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    response = await run(api, walkthrough["dev"])

    encoded = lines_of(response)[1]["result"]
    table = pyarrow.ipc.open_stream(base64.b64decode(encoded)).read_all()
    assert table.to_pylist() == [{"name": "dev"}]


async def test_csv_results_are_a_csv_string(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    response = await run(api, walkthrough["dev"], resultType="csv")

    assert lines_of(response)[1]["result"].splitlines() == ["name", "dev"]


async def test_a_client_accepting_only_json_gets_omnis_openapi_shape(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    response = await api.post(
        "/api/v1/query/run",
        json={
            "query": {"connectionId": walkthrough["dev"], "sql": SQL},
            "resultType": "json",
        },
        headers={"Accept": "application/json"},
    )

    body = response.json()
    assert body["jobIds"] == []
    assert body["completedQueries"][0]["result"] == [{"name": "dev"}]


async def test_limit_truncates_and_says_so(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    base = await connection(api, tmp_path, "many")
    sql = "select 1 as n union all select 2 union all select 3"

    response = await run(api, base, sql=sql, resultType="json")
    limited = await api.post(
        "/api/v1/query/run",
        json={
            "query": {"connectionId": base, "sql": sql, "limit": 2},
            "resultType": "json",
        },
    )

    assert lines_of(response)[1]["summary"]["row_count"] == 3
    job = lines_of(limited)[1]
    assert job["summary"]["row_count"] == 2
    assert job["summary"]["truncated"] is True


async def test_plan_only_routes_without_touching_the_database(
    api: httpx.AsyncClient, walkthrough: dict[str, str], tmp_path: Path
) -> None:
    user = await create_user(api, "p@example.com", {"environment": "prod"})
    (tmp_path / "prod.sqlite").unlink()

    response = await run(api, walkthrough["dev"], userId=user["id"], planOnly=True)

    job = lines_of(response)[1]
    assert job["status"] == "PLANNED"
    assert job["summary"]["display_sql"] == SQL
    assert job["route"]["connectionId"] == walkthrough["prod"]
    assert not (tmp_path / "prod.sqlite").exists()


async def test_plan_only_with_a_result_type_is_400(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    response = await run(api, walkthrough["dev"], planOnly=True, resultType="csv")

    assert_error(
        response, 400, "Bad Request: resultType: Cannot be combined with planOnly"
    )


async def test_a_database_error_is_400_with_the_database_message(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    response = await run(api, walkthrough["dev"], sql="select * from missing_table")

    assert response.status_code == 400
    assert "missing_table" in response.json()["detail"]
    assert response.json()["status"] == 400


async def test_an_unknown_connection_is_404(api: httpx.AsyncClient) -> None:
    response = await run(api, "9b6c1f3e-0000-4000-8000-000000000000")

    assert_error(response, 404, "Connection not found")


async def test_a_missing_sql_is_400(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    response = await api.post(
        "/api/v1/query/run", json={"query": {"connectionId": walkthrough["dev"]}}
    )

    assert_error(response, 400, "Bad Request: query.sql: Required")


async def test_sql_that_is_not_text_is_400(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    response = await run(api, walkthrough["dev"], sql=5)

    assert_error(response, 400, "Bad Request: query.sql: Expected string")


async def test_a_route_for_a_user_id_that_is_no_uuid_is_400_as_the_query_is(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    route = await api.get(
        f"/api/v1/connections/{walkthrough['dev']}/route", params={"userId": "nope"}
    )
    query = await run(api, walkthrough["dev"], userId="nope")

    assert_error(route, 400, "Bad Request: userId: Invalid uuid")
    assert_error(query, 400, "Bad Request: userId: Invalid uuid")


async def test_the_route_of_a_deactivated_user_is_404_as_their_query_is(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    user = await create_user(api, "gone@example.com", {"environment": "prod"})
    deactivated = await api.patch(
        f"/api/scim/v2/Users/{user['id']}",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "path": "active", "value": False}],
        },
    )
    assert deactivated.status_code == 200, deactivated.text

    route = await api.get(
        f"/api/v1/connections/{walkthrough['dev']}/route", params={"userId": user["id"]}
    )
    query = await run(api, walkthrough["dev"], userId=user["id"])

    assert_error(route, 404, "User not found")
    assert_error(query, 404, "User not found")


async def test_an_unknown_user_id_is_404(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    response = await run(
        api, walkthrough["dev"], userId="9b6c1f3e-0000-4000-8000-000000000000"
    )

    assert_error(response, 404, "User not found")


async def test_a_pat_may_not_run_as_another_user(
    api: httpx.AsyncClient, walkthrough: dict[str, str], make_member: Any
) -> None:
    other = await create_user(api, "other@example.com")
    _, member = make_member("member@example.com")

    response = await run(member, walkthrough["dev"], userId=other["id"])

    assert_error(response, 403, "Permission denied")


async def test_a_pat_runs_with_its_owners_attributes(
    api: httpx.AsyncClient, walkthrough: dict[str, str], make_member: Any
) -> None:
    user_id, member = make_member("member@example.com")
    await set_attributes(api, user_id, {"environment": "prod"})

    response = await run(member, walkthrough["dev"], resultType="json")

    assert marker(response) == "prod"


async def test_the_org_key_routes_by_its_creators_attributes(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    admin = (await api.get("/api/v1/whoami")).json()["user"]["id"]
    await set_attributes(api, admin, {"environment": "prod"})

    response = await run(api, walkthrough["dev"], resultType="json")

    assert marker(response) == "prod"


async def test_a_user_without_querier_on_the_base_is_refused(
    api: httpx.AsyncClient, walkthrough: dict[str, str], make_member: Any
) -> None:
    await api.patch(
        f"/api/v1/connections/{walkthrough['dev']}", json={"baseRole": "VIEWER"}
    )
    _, member = make_member("member@example.com")

    response = await run(member, walkthrough["dev"])

    assert_error(response, 403, "Permission denied")


async def test_an_environment_connection_named_directly_needs_connection_admin(
    api: httpx.AsyncClient, walkthrough: dict[str, str], make_member: Any
) -> None:
    await api.patch(
        f"/api/v1/connections/{walkthrough['prod']}", json={"baseRole": "MODELER"}
    )
    _, member = make_member("member@example.com")

    refused = await run(member, walkthrough["prod"])
    allowed = await run(api, walkthrough["prod"], resultType="json")

    assert_error(refused, 403, "Permission denied")
    assert marker(allowed) == "prod"
    assert lines_of(allowed)[1]["route"]["source"] == "direct"


async def test_a_multi_valued_user_with_a_default_value_goes_to_the_base(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    await create_attribute(api, "env", multiple_values=True)
    dev = await connection(api, tmp_path, "dev")
    prod = await connection(api, tmp_path, "prod")
    await api.post(
        "/api/v1/connection-environments",
        json={"baseConnectionId": dev, "environmentConnectionIds": prod},
    )
    await api.patch(
        f"/api/v1/connections/{dev}",
        json={
            "environmentUserAttribute": {
                "attributeName": "env",
                "defaultValues": ["dev"],
            }
        },
    )
    await api.put(
        f"/api/v1/connection-environments/{prod}", json={"userAttributeValues": "prod"}
    )
    both = await create_user(api, "both@example.com", {"env": ["prod", "dev"]})
    only_prod = await create_user(api, "prod@example.com", {"env": ["qa", "prod"]})

    to_base = await run(api, dev, userId=both["id"], resultType="json")
    to_prod = await run(api, dev, userId=only_prod["id"], resultType="json")

    assert marker(to_base) == "dev"
    assert marker(to_prod) == "prod"


async def test_several_matching_environments_pick_the_first_linked(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    await create_attribute(api, "env", multiple_values=True)
    dev = await connection(api, tmp_path, "dev")
    first = await connection(api, tmp_path, "first")
    second = await connection(api, tmp_path, "second")
    await api.post(
        "/api/v1/connection-environments",
        json={"baseConnectionId": dev, "environmentConnectionIds": [first, second]},
    )
    await api.patch(
        f"/api/v1/connections/{dev}",
        json={"userAttributeNameForConnectionEnvironments": "env"},
    )
    await api.put(
        f"/api/v1/connection-environments/{first}", json={"userAttributeValues": "a"}
    )
    await api.put(
        f"/api/v1/connection-environments/{second}", json={"userAttributeValues": "b"}
    )
    user = await create_user(api, "u@example.com", {"env": ["b", "a"]})

    response = await run(api, dev, userId=user["id"], resultType="json")

    assert marker(response) == "first"


async def test_an_attribute_default_routes_users_without_a_value(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    await create_attribute(api, "environment", default_value="prod")
    dev = await connection(api, tmp_path, "dev")
    prod = await connection(api, tmp_path, "prod")
    await api.post(
        "/api/v1/connection-environments",
        json={"baseConnectionId": dev, "environmentConnectionIds": prod},
    )
    await api.patch(
        f"/api/v1/connections/{dev}",
        json={"userAttributeNameForConnectionEnvironments": "environment"},
    )
    await api.put(
        f"/api/v1/connection-environments/{prod}", json={"userAttributeValues": "prod"}
    )
    user = await create_user(api, "u@example.com")

    response = await run(api, dev, userId=user["id"], resultType="json")

    assert marker(response) == "prod"


async def test_a_change_routes_the_very_next_query(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    user = await create_user(api, "u@example.com", {"environment": "staging"})
    before = await run(api, walkthrough["dev"], userId=user["id"], resultType="json")

    await api.put(
        f"/api/v1/connection-environments/{walkthrough['prod']}",
        json={"userAttributeValues": "prod,staging"},
    )
    after = await run(api, walkthrough["dev"], userId=user["id"], resultType="json")

    assert (marker(before), marker(after)) == ("dev", "prod")


async def test_route_explains_a_users_route_without_running(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    user = await create_user(api, "u@example.com", {"environment": "qa"})

    response = await api.get(
        f"/api/v1/connections/{walkthrough['dev']}/route", params={"userId": user["id"]}
    )

    assert response.json() == {
        "baseConnectionId": walkthrough["dev"],
        "connectionId": walkthrough["dev"],
        "connectionEnvironmentId": None,
        "source": "base",
        "reason": 'no environment claims environment = "qa"',
    }


async def test_route_of_another_user_needs_org_admin(
    api: httpx.AsyncClient, walkthrough: dict[str, str], make_member: Any
) -> None:
    user = await create_user(api, "u@example.com")
    _, member = make_member("member@example.com")

    response = await member.get(
        f"/api/v1/connections/{walkthrough['dev']}/route", params={"userId": user["id"]}
    )

    assert_error(response, 403, "Permission denied")


async def test_the_query_log_records_where_and_why(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    user = await create_user(api, "p@example.com", {"environment": "prod"})
    await run(api, walkthrough["dev"], userId=user["id"])
    await run(api, walkthrough["dev"], sql="select * from nowhere")

    response = await api.get("/api/v1/query/log")

    failed, ok = response.json()["records"]
    assert ok["userId"] == user["id"]
    assert ok["connectionId"] == walkthrough["prod"]
    assert ok["connectionEnvironmentId"] == walkthrough["link"]
    assert ok["source"] == "user_attribute"
    assert ok["status"] == "COMPLETE"
    assert ok["rowCount"] == 1
    assert failed["status"] == "ERROR"
    assert "nowhere" in failed["error"]
    assert response.json()["pageInfo"]["totalRecords"] == 2


async def test_the_query_log_keeps_when_each_query_started(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    before = datetime.now(UTC)
    await run(api, walkthrough["dev"])
    await asyncio.sleep(0.05)
    between = datetime.now(UTC)
    await run(api, walkthrough["dev"])

    everything = (await api.get("/api/v1/query/log")).json()["records"]
    since = between.isoformat().replace("+00:00", "Z")
    later = (await api.get("/api/v1/query/log", params={"since": since})).json()

    started = [parse_instant(record["startedAt"]) for record in everything]
    assert all(
        before - timedelta(seconds=1) <= moment <= datetime.now(UTC)
        for moment in started
    )
    assert len(later["records"]) == 1
    assert parse_instant(later["records"][0]["startedAt"]) >= between - timedelta(
        milliseconds=1
    )


def parse_instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_a_member_sees_only_their_own_log(
    api: httpx.AsyncClient, walkthrough: dict[str, str], make_member: Any
) -> None:
    user_id, member = make_member("member@example.com")
    await run(api, walkthrough["dev"])
    await run(member, walkthrough["dev"])

    response = await member.get("/api/v1/query/log")

    assert [record["userId"] for record in response.json()["records"]] == [user_id]


async def test_a_query_past_the_wait_limit_is_collected_with_query_wait(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    slow = (
        "with recursive n(i) as (select 1 union all select i + 1 from n"
        " where i < 3000000) select count(*) as c from n"
    )

    first = await run(
        api, walkthrough["dev"], sql=slow, waitSeconds=0, resultType="json"
    )
    [job_id] = lines_of(first)[-1]["remaining_job_ids"]
    collected = await api.get(
        "/api/v1/query/wait", params={"job_ids": orjson.dumps([job_id]).decode()}
    )

    assert lines_of(first)[-1]["timed_out"] == "true"
    job, footer = lines_of(collected)
    assert job["job_id"] == job_id
    assert job["result"] == [{"c": 3000000}]
    assert footer == {"remaining_job_ids": [], "timed_out": "false"}


async def test_query_wait_of_an_unknown_job_is_404(api: httpx.AsyncClient) -> None:
    job_id = "9b6c1f3e-0000-4000-8000-000000000000"

    response = await api.get("/api/v1/query/wait", params={"jobIds": job_id})

    assert_error(response, 404, f"Job {job_id} not found")


async def test_idle_pools_are_closed(
    api: httpx.AsyncClient, walkthrough: dict[str, str], services: Any
) -> None:
    from pointsman.api.queries import close_idle_pools

    await run(api, walkthrough["dev"])
    assert services.engines.pool_stats(walkthrough["dev"]) is not None
    services.settings = services.settings.with_overrides(pool_idle_seconds=0.1)

    reaper = asyncio.create_task(close_idle_pools(services))
    await asyncio.sleep(1.5)
    reaper.cancel()

    assert services.engines.pool_stats(walkthrough["dev"]) is None


async def test_route_of_an_environment_connection_matches_what_a_run_does(
    api: httpx.AsyncClient, walkthrough: dict[str, str]
) -> None:
    user = await create_user(api, "p@example.com", {"environment": "prod"})

    explained = await api.get(
        f"/api/v1/connections/{walkthrough['prod']}/route",
        params={"userId": user["id"]},
    )
    ran = await run(api, walkthrough["prod"], resultType="json")

    assert explained.json()["source"] == "direct"
    assert lines_of(ran)[1]["route"]["source"] == "direct"


async def test_json_rows_keep_columns_of_the_same_name(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    base = await connection(api, tmp_path, "dupes")

    response = await run(api, base, sql="select 1 as a, 2 as a", resultType="json")

    assert lines_of(response)[1]["result"] == [{"a": 1, "a_2": 2}]


async def test_integers_beyond_64_bits_survive_json(
    api: httpx.AsyncClient, tmp_path: Path
) -> None:
    path = tmp_path / "huge.duckdb"
    body = {"dialect": "duckdb", "name": "huge", "database": str(path)}
    import duckdb

    duckdb.connect(str(path)).close()
    base = (await api.post("/api/v1/connections", json=body)).json()["data"]
    sql = "select 170141183460469231731687303715884105727::hugeint as h"

    response = await run(api, base, sql=sql, resultType="json")

    assert lines_of(response)[1]["result"] == [
        {"h": "170141183460469231731687303715884105727"}
    ]


async def test_a_pool_closes_when_another_process_archives_its_connection(
    api: httpx.AsyncClient, walkthrough: dict[str, str], services: Any
) -> None:
    from pointsman.services.connections import archive_connection

    await run(api, walkthrough["prod"])
    assert services.engines.pool_stats(walkthrough["prod"]) is not None
    archive_connection(services.store, walkthrough["prod"])  # as another process would

    await api.get("/api/v1/whoami")
    await asyncio.sleep(0.2)

    assert services.engines.pool_stats(walkthrough["prod"]) is None
