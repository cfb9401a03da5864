"""Everything a server process (or a CLI command) holds: store, keys,
snapshot cache, engines and the query-log writer."""

from __future__ import annotations

from dataclasses import dataclass, field

from pointsman.config import Settings
from pointsman.crypto import SecretBox, load_keys
from pointsman.engines.registry import EngineRegistry
from pointsman.routing.snapshot import Snapshot
from pointsman.services.metrics import Metrics
from pointsman.services.query_log import QueryLog
from pointsman.services.snapshots import SnapshotCache
from pointsman.services.specs import SpecCache
from pointsman.store.db import Store


@dataclass
class Services:
    settings: Settings
    store: Store
    secrets: SecretBox
    snapshots: SnapshotCache = field(init=False)
    specs: SpecCache = field(init=False)
    engines: EngineRegistry = field(init=False)
    query_log: QueryLog = field(init=False)
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.snapshots = SnapshotCache(self.store)
        self.specs = SpecCache(self.store, self.secrets)
        self.engines = EngineRegistry(
            max_open_connections=self.settings.max_open_connections or None
        )
        self.query_log = QueryLog(self.store)
        self.metrics = Metrics(self.engines)

    @classmethod
    def open(cls, settings: Settings) -> Services:
        store = Store(settings.database_url)
        box = SecretBox(load_keys(settings.secret_keys, settings.data_dir))
        return cls(settings=settings, store=store, secrets=box)

    def snapshot(self) -> Snapshot:
        """The current configuration snapshot (reads the store if needed)."""
        snapshot = self.snapshots.peek()
        return snapshot if snapshot is not None else self.snapshots.current()

    def close(self) -> None:
        self.snapshots.close()
        self.store.dispose()
