"""Placeholder until the module lands."""

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
