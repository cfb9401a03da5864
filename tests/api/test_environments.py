"""Connection environments (spec §5): every rule and error string."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from bodies import connection_body
from helpers import assert_error, create_user

pytestmark = pytest.mark.anyio

UNKNOWN = "9b6c1f3e-0000-4000-8000-000000000000"


async def create(api: httpx.AsyncClient, name: str, **changes: Any) -> str:
    response = await api.post(
        "/api/v1/connections", json=connection_body(name, **changes)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["data"])


async def link(api: httpx.AsyncClient, base: str, *envs: str) -> httpx.Response:
    return await api.post(
        "/api/v1/connection-environments",
        json={"baseConnectionId": base, "environmentConnectionIds": ",".join(envs)},
    )


async def test_create_answers_both_shapes_in_request_order(
    api: httpx.AsyncClient,
) -> None:
    base = await create(api, "dev")
    prod, staging = await create(api, "prod"), await create(api, "staging")

    response = await api.post(
        "/api/v1/connection-environments",
        json={"baseConnectionId": base, "environmentConnectionIds": [prod, staging]},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True
    assert [item["environmentConnectionId"] for item in body["data"]] == [prod, staging]
    first = body["connectionEnvironments"][0]
    assert first["id"] == body["data"][0]["id"]
    assert first["baseConnectionId"] == base
    assert first["connectionId"] == prod
    assert first["environmentConnectionId"] == prod
    assert first["userAttributeValues"] == []


async def test_create_accepts_a_csv_with_spaces_empties_and_duplicates(
    api: httpx.AsyncClient,
) -> None:
    base, prod = await create(api, "dev"), await create(api, "prod")

    response = await api.post(
        "/api/v1/connection-environments",
        json={
            "baseConnectionId": base,
            "environmentConnectionIds": f" {prod} ,, {prod}",
        },
    )

    assert response.status_code == 201
    assert len(response.json()["data"]) == 1


async def test_create_with_a_malformed_base_id_is_400(api: httpx.AsyncClient) -> None:
    response = await link(api, "not-a-uuid", UNKNOWN)

    assert_error(
        response,
        400,
        "Bad Request: baseConnectionId: Base connection ID must be a valid UUID",
    )


async def test_create_with_a_malformed_environment_id_is_400(
    api: httpx.AsyncClient,
) -> None:
    base = await create(api, "dev")

    response = await link(api, base, "nope")

    assert_error(
        response,
        400,
        "Bad Request: environmentConnectionIds: All environment connection IDs "
        "must be valid UUIDs",
    )


async def test_create_with_an_unknown_base_is_404(api: httpx.AsyncClient) -> None:
    response = await link(api, UNKNOWN, UNKNOWN)

    assert_error(response, 404, f"Connection with id {UNKNOWN} does not exist")


async def test_create_lists_every_invalid_id_in_request_order_and_creates_nothing(
    api: httpx.AsyncClient,
) -> None:
    base = await create(api, "dev")
    good = await create(api, "prod")
    mysql = await create(api, "my", dialect="mysql", port=3306)
    archived = await create(api, "old")
    await api.delete(f"/api/v1/connections/{archived}")

    response = await link(api, base, mysql, good, UNKNOWN, base, archived)

    assert_error(
        response,
        400,
        "The following environment connection IDs are not valid for this "
        f"connection: {mysql}, {UNKNOWN}, {base}, {archived}",
    )
    listed = await api.get("/api/v1/connection-environments")
    assert listed.json()["connectionEnvironments"] == []


async def test_create_refuses_an_environment_already_linked_to_this_base(
    api: httpx.AsyncClient,
) -> None:
    base, prod = await create(api, "dev"), await create(api, "prod")
    await link(api, base, prod)

    response = await link(api, base, prod)

    assert_error(
        response,
        400,
        "The following environment connection IDs are not valid for this "
        f"connection: {prod}",
    )


async def test_create_refuses_a_base_of_other_environments_as_environment(
    api: httpx.AsyncClient,
) -> None:
    base, other_base, env = (
        await create(api, "a"),
        await create(api, "b"),
        await create(api, "c"),
    )
    await link(api, other_base, env)

    response = await link(api, base, other_base)

    assert_error(
        response,
        400,
        "The following environment connection IDs are not valid for this "
        f"connection: {other_base}",
    )


async def test_create_refuses_a_base_that_is_itself_an_environment(
    api: httpx.AsyncClient,
) -> None:
    base, env, third = (
        await create(api, "a"),
        await create(api, "b"),
        await create(api, "c"),
    )
    await link(api, base, env)

    response = await link(api, env, third)

    assert_error(
        response,
        400,
        f"Bad Request: baseConnectionId: Connection {env} is an environment of "
        "another base connection",
    )


async def test_mssql_and_sqlserver_are_one_dialect(api: httpx.AsyncClient) -> None:
    fields = {"defaultSchema": "dbo", "port": 1433}
    base = await create(api, "a", dialect="mssql", **fields)
    env = await create(api, "b", dialect="sqlserver", **fields)

    response = await link(api, base, env)

    assert response.status_code == 201


async def test_one_connection_may_be_an_environment_of_two_bases(
    api: httpx.AsyncClient,
) -> None:
    first, second, shared = (
        await create(api, "a"),
        await create(api, "b"),
        await create(api, "c"),
    )

    assert (await link(api, first, shared)).status_code == 201
    assert (await link(api, second, shared)).status_code == 201


async def test_put_by_link_id_replaces_the_values(api: httpx.AsyncClient) -> None:
    base, prod = await create(api, "dev"), await create(api, "prod")
    link_id = (await link(api, base, prod)).json()["data"][0]["id"]
    path = f"/api/v1/connection-environments/{link_id}"

    await api.put(path, json={"userAttributeValues": "prod, live"})
    response = await api.put(path, json={"userAttributeValues": ["live", " x ", "x"]})

    assert response.json() == {"success": True}
    [environment] = (await api.get("/api/v1/connection-environments")).json()[
        "connectionEnvironments"
    ]
    assert environment["userAttributeValues"] == ["live", "x"]


async def test_put_by_environment_connection_id_works_as_in_the_guide(
    api: httpx.AsyncClient,
) -> None:
    base, prod = await create(api, "dev"), await create(api, "prod")
    await link(api, base, prod)

    response = await api.put(
        f"/api/v1/connection-environments/{prod}", json={"userAttributeValues": "prod"}
    )

    assert response.json() == {"success": True}


async def test_put_accepts_an_empty_list(api: httpx.AsyncClient) -> None:
    base, prod = await create(api, "dev"), await create(api, "prod")
    await link(api, base, prod)
    path = f"/api/v1/connection-environments/{prod}"
    await api.put(path, json={"userAttributeValues": "prod"})

    response = await api.put(path, json={"userAttributeValues": ""})

    assert response.status_code == 200
    listed = (await api.get("/api/v1/connection-environments")).json()
    assert listed["connectionEnvironments"][0]["userAttributeValues"] == []


async def test_put_with_an_ambiguous_environment_connection_id_is_400(
    api: httpx.AsyncClient,
) -> None:
    first, second, shared = (
        await create(api, "a"),
        await create(api, "b"),
        await create(api, "c"),
    )
    await link(api, first, shared)
    await link(api, second, shared)

    response = await api.put(
        f"/api/v1/connection-environments/{shared}", json={"userAttributeValues": "x"}
    )

    assert_error(
        response,
        400,
        f"Connection {shared} is an environment of several base connections; "
        "use the connection environment id",
    )


async def test_put_of_an_unknown_id_is_404(api: httpx.AsyncClient) -> None:
    response = await api.put(
        f"/api/v1/connection-environments/{UNKNOWN}", json={"userAttributeValues": "x"}
    )

    assert_error(
        response, 404, f"Connection environment with id {UNKNOWN} does not exist"
    )


async def test_put_refuses_a_value_another_environment_holds(
    api: httpx.AsyncClient,
) -> None:
    base, prod, staging = (
        await create(api, "dev"),
        await create(api, "prod"),
        await create(api, "stg"),
    )
    await link(api, base, prod, staging)
    await api.put(
        f"/api/v1/connection-environments/{prod}", json={"userAttributeValues": "prod"}
    )

    response = await api.put(
        f"/api/v1/connection-environments/{staging}",
        json={"userAttributeValues": "staging,prod"},
    )

    assert_error(response, 400, 'User attribute value "prod" is already in use')


async def test_put_refuses_a_default_value_of_the_base(api: httpx.AsyncClient) -> None:
    await api.post("/api/v1/user-attributes", json={"name": "environment"})
    base, prod = await create(api, "dev"), await create(api, "prod")
    await link(api, base, prod)
    await api.patch(
        f"/api/v1/connections/{base}",
        json={
            "userAttributeNameForConnectionEnvironments": "environment",
            "userAttributeValuesForDefaultEnvironment": "dev",
        },
    )

    response = await api.put(
        f"/api/v1/connection-environments/{prod}", json={"userAttributeValues": "dev"}
    )

    assert_error(response, 400, 'User attribute value "dev" is already in use')


async def test_patch_refuses_a_default_value_an_environment_holds(
    api: httpx.AsyncClient,
) -> None:
    await api.post("/api/v1/user-attributes", json={"name": "environment"})
    base, prod = await create(api, "dev"), await create(api, "prod")
    await link(api, base, prod)
    await api.put(
        f"/api/v1/connection-environments/{prod}", json={"userAttributeValues": "prod"}
    )

    response = await api.patch(
        f"/api/v1/connections/{base}",
        json={
            "environmentUserAttribute": {
                "attributeName": "environment",
                "defaultValues": ["prod"],
            }
        },
    )

    assert_error(response, 400, 'User attribute value "prod" is already in use')


async def test_number_values_are_stored_in_canonical_form(
    api: httpx.AsyncClient,
) -> None:
    await api.post("/api/v1/user-attributes", json={"name": "tier", "type": "Number"})
    base, gold = await create(api, "dev"), await create(api, "gold")
    await link(api, base, gold)
    await api.patch(
        f"/api/v1/connections/{base}",
        json={"userAttributeNameForConnectionEnvironments": "tier"},
    )

    await api.put(
        f"/api/v1/connection-environments/{gold}",
        json={"userAttributeValues": "01, 1.0, 2.50"},
    )

    listed = (await api.get("/api/v1/connection-environments")).json()
    assert listed["connectionEnvironments"][0]["userAttributeValues"] == ["1", "2.5"]


async def test_concurrent_puts_of_one_value_let_exactly_one_win(
    api: httpx.AsyncClient,
) -> None:
    base, prod, staging = (
        await create(api, "dev"),
        await create(api, "prod"),
        await create(api, "stg"),
    )
    await link(api, base, prod, staging)

    responses = await asyncio.gather(
        *(
            api.put(
                f"/api/v1/connection-environments/{env}",
                json={"userAttributeValues": "x"},
            )
            for env in (prod, staging)
        )
    )

    assert sorted(response.status_code for response in responses) == [200, 400]


async def test_delete_removes_only_the_link(api: httpx.AsyncClient) -> None:
    base, prod = await create(api, "dev"), await create(api, "prod")
    link_id = (await link(api, base, prod)).json()["data"][0]["id"]

    response = await api.delete(f"/api/v1/connection-environments/{link_id}")

    assert response.json() == {"success": True}
    assert (await api.get("/api/v1/connection-environments")).json() == {
        "connectionEnvironments": []
    }
    assert (await api.get(f"/api/v1/connections/{prod}")).status_code == 200


async def test_delete_frees_the_values(api: httpx.AsyncClient) -> None:
    base, prod, staging = (
        await create(api, "dev"),
        await create(api, "prod"),
        await create(api, "stg"),
    )
    await link(api, base, prod, staging)
    await api.put(
        f"/api/v1/connection-environments/{prod}", json={"userAttributeValues": "x"}
    )
    await api.delete(f"/api/v1/connection-environments/{prod}")

    response = await api.put(
        f"/api/v1/connection-environments/{staging}", json={"userAttributeValues": "x"}
    )

    assert response.status_code == 200


async def test_archiving_a_connection_removes_its_links_and_frees_values(
    api: httpx.AsyncClient,
) -> None:
    base, prod, staging = (
        await create(api, "dev"),
        await create(api, "prod"),
        await create(api, "stg"),
    )
    await link(api, base, prod, staging)
    await api.put(
        f"/api/v1/connection-environments/{prod}", json={"userAttributeValues": "x"}
    )

    await api.delete(f"/api/v1/connections/{prod}")
    response = await api.put(
        f"/api/v1/connection-environments/{staging}", json={"userAttributeValues": "x"}
    )

    assert response.status_code == 200
    envs = (await api.get("/api/v1/connection-environments")).json()[
        "connectionEnvironments"
    ]
    assert [env["connectionId"] for env in envs] == [staging]


async def test_delete_of_an_unknown_id_is_404(api: httpx.AsyncClient) -> None:
    response = await api.delete(f"/api/v1/connection-environments/{UNKNOWN}")

    assert_error(
        response, 404, f"Connection environment with id {UNKNOWN} does not exist"
    )


async def test_list_filters_by_base(api: httpx.AsyncClient) -> None:
    first, second = await create(api, "a"), await create(api, "b")
    env_one, env_two = await create(api, "c"), await create(api, "d")
    await link(api, first, env_one)
    await link(api, second, env_two)

    response = await api.get(
        "/api/v1/connection-environments", params={"baseConnectionId": second}
    )

    assert [
        env["connectionId"] for env in response.json()["connectionEnvironments"]
    ] == [env_two]


async def test_managing_environments_needs_connection_admin_on_the_base(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    base, prod = await create(api, "dev"), await create(api, "prod")
    _, member = make_member("member@example.com")

    response = await link(member, base, prod)

    assert_error(response, 403, "Permission denied")


async def test_a_connection_admin_on_the_base_may_link_environments_they_can_see(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    base = await create(api, "dev", baseRole="CONNECTION_ADMIN")
    prod = await create(api, "prod")
    hidden = await create(api, "hidden", baseRole="VIEWER")
    _, member = make_member("member@example.com")

    allowed = await link(member, base, prod)
    refused = await link(member, base, hidden)

    assert allowed.status_code == 201
    assert_error(refused, 403, "Permission denied")


async def test_concurrent_links_cannot_build_a_chain(api: httpx.AsyncClient) -> None:
    a, b, c = await create(api, "a"), await create(api, "b"), await create(api, "c")

    responses = await asyncio.gather(link(api, a, b), link(api, b, c))

    assert sorted(response.status_code for response in responses) == [201, 400]


async def number_pair(api: httpx.AsyncClient) -> tuple[str, str]:
    """A base routing on the Number attribute ``tier``, and its environment."""
    await api.post("/api/v1/user-attributes", json={"name": "tier", "type": "Number"})
    base, gold = await create(api, "dev"), await create(api, "gold")
    await link(api, base, gold)
    await api.patch(
        f"/api/v1/connections/{base}",
        json={"userAttributeNameForConnectionEnvironments": "tier"},
    )
    return base, gold


async def number_base(api: httpx.AsyncClient) -> str:
    return (await number_pair(api))[1]


@pytest.mark.parametrize(
    ("raw", "stored"), [("1e400", "1" + "0" * 400), ("9" * 100, "9" * 100)]
)
async def test_large_numbers_are_kept_exactly(
    api: httpx.AsyncClient, raw: str, stored: str
) -> None:
    gold = await number_base(api)

    response = await api.put(
        f"/api/v1/connection-environments/{gold}", json={"userAttributeValues": raw}
    )

    assert response.status_code == 200, response.text
    listed = (await api.get("/api/v1/connection-environments")).json()
    assert listed["connectionEnvironments"][0]["userAttributeValues"] == [stored]


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        (b"123456789012345678901234", "123456789012345678901234"),
        (b"123456789012345678909999", "123456789012345678909999"),
        (b"1.0000000000000001", "1.0000000000000001"),
        (b"2.50", "2.5"),
        (b"1e3", "1000"),
    ],
)
async def test_json_numbers_are_kept_as_written_not_as_a_float_rounds_them(
    api: httpx.AsyncClient, raw: bytes, stored: str
) -> None:
    gold = await number_base(api)

    response = await api.put(
        f"/api/v1/connection-environments/{gold}",
        content=b'{"userAttributeValues": [' + raw + b"]}",
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 200, response.text
    listed = (await api.get("/api/v1/connection-environments")).json()
    assert listed["connectionEnvironments"][0]["userAttributeValues"] == [stored]


async def test_users_whose_large_numbers_differ_in_the_last_digits_route_apart(
    api: httpx.AsyncClient,
) -> None:
    base, gold = await number_pair(api)
    claimed = 123456789012345678901234
    await api.put(
        f"/api/v1/connection-environments/{gold}",
        json={"userAttributeValues": [claimed]},
    )
    owner = await create_user(api, "owner@example.com", {"tier": claimed})
    other = await create_user(api, "other@example.com", {"tier": claimed + 8765})

    routes = [
        (
            await api.get(
                f"/api/v1/connections/{base}/route", params={"userId": user["id"]}
            )
        ).json()["connectionId"]
        for user in (owner, other)
    ]

    assert routes == [gold, base]


@pytest.mark.parametrize("raw", ["1_000", "\u0661", "0x10", "1e", "+"])
async def test_a_number_is_written_in_ascii_digits(
    api: httpx.AsyncClient, raw: str
) -> None:
    gold = await number_base(api)

    response = await api.put(
        f"/api/v1/connection-environments/{gold}",
        content=b'{"userAttributeValues": ["' + raw.encode() + b'"]}',
        headers={"Content-Type": "application/json"},
    )

    assert response.status_code == 400, response.text
    assert "is not a number" in response.json()["detail"]


async def test_a_number_longer_than_a_value_may_be_when_written_out_is_400(
    api: httpx.AsyncClient,
) -> None:
    gold = await number_base(api)

    response = await api.put(
        f"/api/v1/connection-environments/{gold}",
        json={"userAttributeValues": ["1" * 495 + "e-520"]},
    )

    assert_error(
        response,
        400,
        "Bad Request: userAttributeValues: Values must be at most 512 characters"
        " written out in full",
    )


async def test_an_absurd_exponent_is_not_a_number(api: httpx.AsyncClient) -> None:
    gold = await number_base(api)

    response = await api.put(
        f"/api/v1/connection-environments/{gold}",
        json={"userAttributeValues": "1e999999999"},
    )

    assert_error(
        response, 400, 'Bad Request: userAttributeValues: "1e999999999" is not a number'
    )


async def test_routing_on_a_number_attribute_refuses_values_that_collide(
    api: httpx.AsyncClient,
) -> None:
    await api.post("/api/v1/user-attributes", json={"name": "tier", "type": "Number"})
    base, gold, silver = (
        await create(api, "dev"),
        await create(api, "g"),
        await create(api, "s"),
    )
    await link(api, base, gold, silver)
    await api.put(
        f"/api/v1/connection-environments/{gold}", json={"userAttributeValues": "01"}
    )
    await api.put(
        f"/api/v1/connection-environments/{silver}", json={"userAttributeValues": "1"}
    )

    response = await api.patch(
        f"/api/v1/connections/{base}",
        json={"userAttributeNameForConnectionEnvironments": "tier"},
    )

    assert_error(response, 400, 'User attribute value "1" is already in use')


async def test_changing_a_link_needs_a_view_of_its_environment_connection(
    api: httpx.AsyncClient, make_member: Any
) -> None:
    base = await create(api, "dev", baseRole="CONNECTION_ADMIN")
    hidden = await create(api, "hidden")
    await link(api, base, hidden)
    await api.patch(f"/api/v1/connections/{hidden}", json={"baseRole": "NO_ACCESS"})
    _, member = make_member("member@example.com")

    put = await member.put(
        f"/api/v1/connection-environments/{hidden}", json={"userAttributeValues": "x"}
    )
    deleted = await member.delete(f"/api/v1/connection-environments/{hidden}")

    assert_error(put, 403, "Permission denied")
    assert_error(deleted, 403, "Permission denied")
