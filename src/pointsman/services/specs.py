"""Resolved connections as engines/ needs them, cached per configuration
version so that the hot path does not read and decrypt on every query."""

from __future__ import annotations

import asyncio

from pointsman.crypto import SecretBox
from pointsman.engines.spec import ConnectionSpec
from pointsman.services.connections import engine_spec
from pointsman.store.db import Store


class SpecCache:
    def __init__(self, store: Store, box: SecretBox):
        self._store = store
        self._box = box
        self._version = -1
        self._specs: dict[str, ConnectionSpec] = {}

    async def get(self, connection_id: str, version: int) -> ConnectionSpec:
        if version != self._version:
            self._specs, self._version = {}, version
        spec = self._specs.get(connection_id)
        if spec is None:
            spec = await asyncio.to_thread(
                engine_spec, self._store, self._box, connection_id
            )
            if version == self._version:
                self._specs[connection_id] = spec
        return spec
