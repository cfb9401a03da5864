"""The resolver's cost per decision on synthetic snapshots.

    python bench/resolver_bench.py [--quick]     # prints one JSON object

One base routes on ``environment``; each of its N environments claims one
value; every user's value is the claim of a random environment (so every
decision takes the ``user_attribute`` path: claim look-up, live check, the
reason string). Decisions are made for users drawn at random from all of
them, so the large snapshot pays its cache misses.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
import uuid
from typing import Any

from pointsman.routing.resolver import resolve
from pointsman.routing.snapshot import (
    AttributeDefinition,
    ConnectionInfo,
    EnvironmentLink,
    Snapshot,
    TokenInfo,
    UserInfo,
    build_snapshot,
)
from pointsman.services.actors import Actor
from pointsman.services.queries import impersonate, route_for

SIZES = ((10, 10), (100_000, 10_000))


def new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def build(
    users: int, environments: int, rng: random.Random
) -> tuple[Snapshot, ConnectionInfo, list[UserInfo], dict[str, str]]:
    base = ConnectionInfo(
        id=new_id(rng),
        name="Base",
        dialect="postgres",
        archived=False,
        base_role="QUERIER",
        environment_attribute="environment",
        default_values=frozenset({"base"}),
    )
    targets = [
        ConnectionInfo(
            id=new_id(rng),
            name=f"Environment {i}",
            dialect="postgres",
            archived=False,
            base_role="QUERIER",
        )
        for i in range(environments)
    ]
    links = [
        EnvironmentLink(
            id=new_id(rng),
            base_connection_id=base.id,
            environment_connection_id=target.id,
            values=(f"env-{i}",),
            order=i,
        )
        for i, target in enumerate(targets)
    ]
    attribute = AttributeDefinition(
        id=new_id(rng),
        name="environment",
        type="String",
        multiple_values=False,
        default_value=None,
    )
    people = [
        UserInfo(
            id=new_id(rng),
            email=f"user{i}@example.com",
            display_name=f"User {i}",
            active=True,
            is_org_admin=False,
            membership_id=new_id(rng),
            values={"environment": (f"env-{rng.randrange(environments)}",)},
        )
        for i in range(users)
    ]
    snapshot = build_snapshot(1, [base, *targets], links, [attribute], people, [])
    expected = {
        f"env-{i}": target.id for i, target in enumerate(targets)
    }  # value -> connection id
    return snapshot, base, people, expected


def per_call_us(function: Any, arguments: list[tuple[Any, ...]], repeats: int) -> dict:
    """``function(*a)`` for each a, ``repeats`` passes: wall time per call by
    ``perf_counter_ns`` (median and best pass), and CPU time per call by
    ``process_time_ns`` (median), which other load on the machine inflates
    less."""
    walls, cpus = [], []
    for _ in range(repeats):
        cpu = time.process_time_ns()
        started = time.perf_counter_ns()
        for args in arguments:
            function(*args)
        walls.append((time.perf_counter_ns() - started) / len(arguments) / 1000)
        cpus.append((time.process_time_ns() - cpu) / len(arguments) / 1000)
    return {
        "median_us": statistics.median(walls),
        "best_us": min(walls),
        "cpu_median_us": statistics.median(cpus),
    }


def measure(users: int, environments: int, calls: int, repeats: int) -> dict:
    rng = random.Random(users * 31 + environments)
    started = time.perf_counter()
    snapshot, base, people, expected = build(users, environments, rng)
    built = time.perf_counter() - started
    sample = [people[rng.randrange(users)] for _ in range(calls)]
    for user in sample[:1000]:  # the decisions are right, not just fast
        route = resolve(snapshot, user, base)
        wanted = expected[user.values["environment"][0]]
        assert route.connection_id == wanted and route.source == "user_attribute"
    decisions = per_call_us(resolve, [(snapshot, u, base) for u in sample], repeats)
    # The whole routing step of query/run: org key acting as the user,
    # the QUERY_BASE permission check, then resolve.
    key = TokenInfo(
        id=new_id(rng), name="org", kind="organization", enabled=True, user_id=None
    )
    actors = [impersonate(Actor(user=u, token=key), u) for u in sample]
    routed = per_call_us(
        route_for, [(snapshot, a, base, None) for a in actors], repeats
    )
    return {
        "users": users,
        "environments": environments,
        "calls": calls,
        "repeats": repeats,
        "snapshot_build_s": round(built, 2),
        "resolve": decisions,
        "route_for": routed,
    }


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    calls, repeats = (20_000, 3) if quick else (100_000, 3)
    results = [measure(u, e, calls, repeats) for u, e in SIZES]
    print(json.dumps(results))
