"""Users' attribute values as the snapshot loader hands them out: shared
between users holding the same ones, with the routes they lead to."""

from __future__ import annotations

from pointsman.routing.resolver import by_rules, resolve
from pointsman.routing.snapshot import (
    AttributeDefinition,
    ConnectionInfo,
    EnvironmentLink,
    SharedValues,
    Snapshot,
    UserInfo,
    UserValues,
)
from pointsman.routing.snapshot import build_snapshot as build

BASE = ConnectionInfo(
    "base", "Base", "postgres", False, "QUERIER", environment_attribute="env"
)
ATTRIBUTE = AttributeDefinition("a-env", "env", "String", False, None)


def environment(name: str) -> ConnectionInfo:
    return ConnectionInfo(name, name.title(), "postgres", False, "QUERIER")


def user(user_id: str, values: object) -> UserInfo:
    return UserInfo(
        user_id, f"{user_id}@example.com", user_id, True, False, f"m-{user_id}", values
    )  # type: ignore[arg-type]


def snapshot(users: list[UserInfo], claims: dict[str, str]) -> Snapshot:
    """``claims``: value -> the environment connection claiming it."""
    targets = sorted(set(claims.values()))
    links = [
        EnvironmentLink(
            f"link-{target}",
            "base",
            target,
            tuple(v for v, t in claims.items() if t == target),
            order,
        )
        for order, target in enumerate(targets)
    ]
    return build(1, [BASE, *map(environment, targets)], links, [ATTRIBUTE], users, [])


def test_users_with_equal_values_share_one_mapping_of_the_same_strings() -> None:
    shared = SharedValues(["prod"])
    first = shared({"env": ("prod",), "region": ("eu",)})
    prod = "".join(["pr", "od"])  # equal, not the same object
    second = shared({"region": ("eu",), "env": (prod,)})
    other = shared({"env": ("dev",)})
    assert first is second and isinstance(first, UserValues)
    assert first == {"env": ("prod",), "region": ("eu",)}
    assert other is not first and other == {"env": ("dev",)}
    assert prod is not "prod" and second["env"][0] is "prod"  # noqa: F632


def test_users_without_values_get_an_empty_mapping() -> None:
    shared = SharedValues()
    assert shared(None) == {} and shared({}) == {}


def test_a_decision_from_shared_values_is_the_rules_decision() -> None:
    shared = SharedValues()
    users = [
        user("u1", shared({"env": ("prod",)})),
        user("u2", shared({"env": ("prod",)})),
        user("u3", shared({"env": ("nobody",)})),
        user("u4", shared({"env": ("prod", "dev")})),
        user("u5", shared(None)),
    ]
    snap = snapshot(users, {"prod": "e-prod", "dev": "e-dev"})
    table = snap.base_routes["base"]
    assert users[0].values.routes == {table: table.by_value["prod"]}  # type: ignore[attr-defined]
    for each in users:
        assert resolve(snap, each, BASE) == by_rules(snap, each, BASE)
    assert resolve(snap, users[1], BASE).connection_id == "e-prod"


def test_a_later_snapshot_of_the_same_values_does_not_reroute_an_earlier_one() -> None:
    shared = SharedValues()
    users = [user("u1", shared({"env": ("prod",)}))]
    earlier = snapshot(users, {"prod": "e-old"})
    later = snapshot(users, {"prod": "e-new"})
    assert resolve(later, users[0], BASE).connection_id == "e-new"
    assert resolve(earlier, users[0], BASE).connection_id == "e-old"
    assert resolve(later, users[0], BASE).connection_id == "e-new"
