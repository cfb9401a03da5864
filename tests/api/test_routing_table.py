"""The routing table: the app tries its hot paths first, which is safe only
because no two routes serve the same path and method."""

from __future__ import annotations

import re

from starlette.routing import BaseRoute, Match, Route

from pointsman.api.app import HOT_PATHS, all_routes, dispatch_order

SAMPLE_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def http_routes(routes: list[BaseRoute]) -> list[Route]:
    found = [route for route in routes if isinstance(route, Route)]
    assert len(found) == len(routes)
    return found


def full_matches(routes: list[Route], path: str, method: str) -> list[Route]:
    scope = {"type": "http", "path": path, "method": method, "root_path": ""}
    return [route for route in routes if route.matches(scope)[0] is Match.FULL]


def test_no_two_routes_serve_the_same_path_and_method() -> None:
    routes = http_routes(all_routes())
    for route in routes:
        path = re.sub(r"\{[^}]+\}", SAMPLE_ID, route.path)
        for method in route.methods or ():
            assert full_matches(routes, path, method) == [route], (path, method)


def test_the_hot_paths_are_tried_first_and_nothing_is_lost() -> None:
    described = all_routes()
    served = dispatch_order(described)

    assert sorted(map(id, served)) == sorted(map(id, described))
    hot = [route for route in http_routes(served) if route.path in HOT_PATHS]
    assert hot and served[: len(hot)] == hot
    assert {route.path for route in hot} == set(HOT_PATHS)
