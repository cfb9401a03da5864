"""``pointsman api-key create --user`` prints a personal access token that
the running server accepts at once."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import pytest
from e2e_support import (
    ServerProcess,
    create_user,
    expect,
    last_line,
    pointsman_command,
    unique,
)


@dataclass(frozen=True)
class PrintedToken:
    user_id: str
    token: str


@pytest.fixture(scope="module")
def printed_token(pointsman_server: ServerProcess, api: httpx.Client) -> PrintedToken:
    """The last line of ``api-key create`` for a member made through SCIM."""
    email = f"{unique('member')}@example.com"
    user_id = create_user(api, email, None)

    output = pointsman_command(
        pointsman_server.env, "api-key", "create", "--name", "x", "--user", email
    )

    return PrintedToken(user_id, last_line(output))


def test_the_printed_token_is_a_personal_access_token(
    printed_token: PrintedToken,
) -> None:
    assert printed_token.token.startswith("psm_pat_")


def test_whoami_with_the_printed_token_answers_user_scope(
    pointsman_server: ServerProcess, printed_token: PrintedToken
) -> None:
    with pointsman_server.client(printed_token.token) as client:
        response = client.get("/api/v1/whoami")

    assert expect(response, 200)["keyScope"] == "user"


def test_whoami_with_the_printed_token_names_the_user_it_was_made_for(
    pointsman_server: ServerProcess, printed_token: PrintedToken
) -> None:
    with pointsman_server.client(printed_token.token) as client:
        response = client.get("/api/v1/whoami")

    body = expect(response, 200)
    assert body["user"]["id"] == printed_token.user_id
    assert body["orgRole"] == "MEMBER"
