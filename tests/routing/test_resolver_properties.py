"""The resolver against the rules of spec §6, on generated configurations.

Each case is one generated world (bases, environments and their values,
defaults, attributes, groups, grants, picks, switches, branches, archived
environment connections); every (user, base, branch or none) of the world is
checked against the rules as ``routing_rules`` writes them out from the spec.
The last tests check that a run generated at least ten thousand cases and
that they reached every source.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, note, settings
from routing_rules import decide, effective_values, may_pick, switch_holds
from routing_worlds import World, describe, snapshot_of, worlds

from pointsman.routing import resolver
from pointsman.routing.resolver import Route
from pointsman.routing.snapshot import Snapshot

# Examples per test: together a little over the 10,000 a run must generate.
REQUIRED_CASES = 10_000
ROUTE_CASES = 8_200
REASON_CASES = 800
SIDE_CASES = 400  # for each of the three tests of the resolver's helpers

CASES: Counter[str] = Counter()  # generated worlds, per test
SOURCES: Counter[str] = Counter()  # what the rules decided, over every route


def examples(count: int) -> settings:
    """``count`` fresh worlds every run; a failure prints the blob that
    replays it (``@reproduce_failure``), since no example database is kept."""
    return settings(
        max_examples=count,
        deadline=None,
        derandomize=False,
        database=None,  # nothing written to the working tree
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow],
    )


def resolve(
    snapshot: Snapshot,
    user: str,
    base: str,
    branch: str | None,
    decide: Callable[..., Route] = resolver.resolve,
) -> Route:
    return decide(
        snapshot,
        snapshot.users[user],
        snapshot.connections[base],
        snapshot.branches[branch] if branch is not None else None,
    )


# -- the route ------------------------------------------------------------------


@examples(ROUTE_CASES)
@given(worlds())
def test_every_route_goes_where_the_four_rules_send_it(world: World) -> None:
    note(describe(world))
    snapshot = snapshot_of(world)
    CASES["route"] += 1

    for user, base, branch in world.requests():
        route = resolve(snapshot, user, base, branch)
        decision = decide(world, user, base, branch)

        SOURCES[decision.source] += 1
        SOURCES["branch ignored"] += decision.branch_ignored
        SOURCES["selection ignored"] += decision.selection_ignored
        got = (route.connection_id, route.connection_environment_id, route.source)
        expected = (decision.connection_id, decision.link_id, decision.source)
        assert got == expected, f"{user} on {base}, branch {branch}: {route}"
        # A route worked out ahead is the rules' own, reason included.
        by_rules = resolve(snapshot, user, base, branch, resolver.by_rules)
        assert route == by_rules, f"{user} on {base}, branch {branch}: {route}"


SENTENCE_BREAK = re.compile(r"[.!?]\s+\S|\n")


@examples(REASON_CASES)
@given(worlds())
def test_every_reason_is_one_sentence_naming_each_ignored_source(
    world: World,
) -> None:
    note(describe(world))
    snapshot = snapshot_of(world)
    CASES["reason"] += 1

    for user, base, branch in world.requests():
        reason = resolve(snapshot, user, base, branch).reason
        decision = decide(world, user, base, branch)

        where = f"{user} on {base}, branch {branch}: {reason!r}"
        assert reason.strip() and reason == reason.strip(), where
        assert not SENTENCE_BREAK.search(reason), where
        if decision.branch_ignored:
            name = re.escape(snapshot.branches[str(branch)].name)
            assert re.search(rf"\bbranch {name}\b.*\bignored\b", reason), where
        assert ("selection ignored" in reason) == decision.selection_ignored, where
        if not (decision.branch_ignored or decision.selection_ignored):
            assert "ignored" not in reason, where


# -- the resolver's helpers -------------------------------------------------------


@examples(SIDE_CASES)
@given(worlds())
def test_effective_values_are_the_switch_else_own_else_default(world: World) -> None:
    note(describe(world))
    snapshot = snapshot_of(world)
    CASES["values"] += 1

    for user in world.users:
        for attribute in world.attributes:
            got = resolver.effective_values(
                snapshot, snapshot.users[user.id], attribute.name
            )

            expected = effective_values(world, user.id, attribute.name)
            assert sorted(got) == sorted(expected), f"{user.id} {attribute.name}"


@examples(SIDE_CASES)
@given(worlds())
def test_a_switch_holds_only_while_every_value_is_provisioned(world: World) -> None:
    note(describe(world))
    snapshot = snapshot_of(world)
    CASES["switches"] += 1

    for (user, attribute), values in world.switches.items():
        got = resolver.may_switch_to(snapshot, snapshot.users[user], attribute, values)

        assert got == switch_holds(world, user, attribute, values), (user, attribute)


@examples(SIDE_CASES)
@given(worlds())
def test_only_admins_and_grantees_may_pick_an_environment(world: World) -> None:
    note(describe(world))
    snapshot = snapshot_of(world)
    CASES["picks"] += 1

    for user in world.users:
        for link in world.links:
            got = resolver.may_pick(
                snapshot, snapshot.users[user.id], snapshot.links[link.id]
            )

            assert got == may_pick(world, user.id, link.id), (user.id, link.id)


# -- the run as a whole (after the tests above) -------------------------------------

PROPERTY_TESTS = {
    "test_every_route_goes_where_the_four_rules_send_it",
    "test_every_reason_is_one_sentence_naming_each_ignored_source",
    "test_effective_values_are_the_switch_else_own_else_default",
    "test_a_switch_holds_only_while_every_value_is_provisioned",
    "test_only_admins_and_grantees_may_pick_an_environment",
}


@pytest.fixture
def whole_module_ran(request: pytest.FixtureRequest) -> None:
    """Skip unless every property test of this module was selected (and so
    ran before this test), since the totals only add up for a whole run."""
    selected = {
        item.name
        for item in request.session.items
        if isinstance(item, pytest.Function) and item.module is request.module
    }
    missing = PROPERTY_TESTS - selected
    if missing:
        pytest.skip(f"needs the whole module; not selected: {sorted(missing)}")


@pytest.mark.usefixtures("whole_module_ran")
def test_a_run_generates_at_least_ten_thousand_cases() -> None:
    assert CASES.total() >= REQUIRED_CASES, dict(CASES)


@pytest.mark.usefixtures("whole_module_ran")
def test_the_generated_cases_reach_every_source_and_every_skip() -> None:
    wanted = {"branch", "user_selection", "user_attribute", "base"}
    wanted |= {"branch ignored", "selection ignored"}
    assert all(SOURCES[name] >= 100 for name in wanted), dict(SOURCES)
