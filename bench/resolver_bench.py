"""The resolver's cost per decision on synthetic snapshots.

    python bench/resolver_bench.py [--quick]     # prints one JSON object

One base routes on ``environment``; each of its N environments claims one
value; every user's value is the claim of a random environment (so every
decision takes the ``user_attribute`` path: claim look-up, live check, the
reason string). Users are built as the snapshot loader builds them (equal
values shared, see ``SharedValues``), and decisions are made for the
snapshot's own user records, as ``query/run`` makes them.

Two figures per size:

- ``resolve``: decisions for 1,000 users drawn at random from the snapshot
  (all of them when it holds fewer), each deciding in turn at random: the
  users querying at one time, whose records the CPU's caches hold, as they
  hold a request's user once its token was checked. The targets are read
  off this one.
- ``resolve_cold``: decisions for users drawn from all of them, so that at
  100,000 users nearly every decision first waits for the user's record to
  come from memory (some 100 ns a miss on these machines, about half a small
  snapshot's whole decision).
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
    SharedValues,
    Snapshot,
    TokenInfo,
    UserInfo,
    build_snapshot,
)
from pointsman.services.actors import Actor
from pointsman.services.queries import impersonate, route_for

SIZES = ((10, 10), (100_000, 10_000))
ACTIVE_USERS = 1_000


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
    shared = SharedValues(value for link in links for value in link.values)
    people = [
        UserInfo(
            id=new_id(rng),
            email=f"user{i}@example.com",
            display_name=f"User {i}",
            active=True,
            is_org_admin=False,
            membership_id=new_id(rng),
            values=shared({"environment": (f"env-{rng.randrange(environments)}",)}),
        )
        for i in range(users)
    ]
    snapshot = build_snapshot(1, [base, *targets], links, [attribute], people, [])
    expected = {
        f"env-{i}": target.id for i, target in enumerate(targets)
    }  # value -> connection id
    return snapshot, base, people, expected


class Timings:
    """Passes of ``function(*a)`` over a list of argument tuples: wall time
    per call by ``perf_counter_ns``, and CPU time per call by
    ``process_time_ns``, which other load on the machine inflates less."""

    def __init__(self, function: Any, arguments: list[tuple[Any, ...]]):
        self.function, self.arguments = function, arguments
        self.walls: list[float] = []
        self.cpus: list[float] = []

    def one_pass(self) -> None:
        function, arguments = self.function, self.arguments
        cpu = time.process_time_ns()
        started = time.perf_counter_ns()
        for args in arguments:
            function(*args)
        self.walls.append((time.perf_counter_ns() - started) / len(arguments) / 1000)
        self.cpus.append((time.process_time_ns() - cpu) / len(arguments) / 1000)

    def summary(self) -> dict[str, float]:
        return {
            "median_us": statistics.median(self.walls),
            "best_us": min(self.walls),
            "cpu_median_us": statistics.median(self.cpus),
        }


class World:
    """One size: its snapshot, the decisions to time, checked right first."""

    def __init__(self, users: int, environments: int, calls: int):
        self.users, self.environments, self.calls = users, environments, calls
        rng = random.Random(users * 31 + environments)
        started = time.perf_counter()
        snapshot, base, people, expected = build(users, environments, rng)
        self.built = time.perf_counter() - started
        # As query/run does: the user records the snapshot holds.
        held = [snapshot.users[person.id] for person in people]
        active = rng.sample(held, min(users, ACTIVE_USERS))
        sample = [active[rng.randrange(len(active))] for _ in range(calls)]
        cold = [held[rng.randrange(users)] for _ in range(calls)]
        for user in sample[:1000] + cold[:1000]:  # right, not just fast
            route = resolve(snapshot, user, base)
            wanted = expected[user.values["environment"][0]]
            assert route.connection_id == wanted and route.source == "user_attribute"
        self.active = len(active)
        # The whole routing step of query/run: org key acting as the user,
        # the QUERY_BASE permission check, then resolve.
        key = TokenInfo(
            id=new_id(rng), name="org", kind="organization", enabled=True, user_id=None
        )
        actors = [impersonate(Actor(user=u, token=key), u) for u in sample]
        self.timings = {
            "resolve": Timings(resolve, [(snapshot, u, base) for u in sample]),
            "resolve_cold": Timings(resolve, [(snapshot, u, base) for u in cold]),
            "route_for": Timings(
                route_for, [(snapshot, a, base, None) for a in actors]
            ),
        }

    def report(self, repeats: int) -> dict[str, Any]:
        return {
            "users": self.users,
            "environments": self.environments,
            "calls": self.calls,
            "repeats": repeats,
            "snapshot_build_s": round(self.built, 2),
            "active_users": self.active,
            **{name: timing.summary() for name, timing in self.timings.items()},
        }


def measure(calls: int, repeats: int) -> list[dict[str, Any]]:
    """Every size, its passes taking turns with the other's, so that a
    spell of other load on the machine falls on both alike."""
    worlds = [World(users, environments, calls) for users, environments in SIZES]
    for _ in range(repeats):
        for world in worlds:
            for timing in world.timings.values():
                timing.one_pass()
    return [world.report(repeats) for world in worlds]


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    calls, repeats = (20_000, 5) if quick else (100_000, 9)
    print(json.dumps(measure(calls, repeats)))
