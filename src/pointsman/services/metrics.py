"""Prometheus metrics of one server process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from pointsman.engines.registry import EngineRegistry

LATENCY_BUCKETS_SECONDS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip

POOL_GAUGES = {
    "size": "Open database connections in the pool",
    "inUse": "Pooled connections running a statement",
    "idle": "Pooled connections waiting for work",
    "waiting": "Requests waiting for a pooled connection",
}
QUERY_GAUGES = {
    "queriesRunning": "Queries running on the connection",
    "queriesQueued": "Queries waiting for a turn on the connection",
}


class Metrics:
    """Counters and histograms kept per process; pool gauges are read from the
    engines at scrape time."""

    def __init__(self, engines: EngineRegistry):
        self.registry = CollectorRegistry(auto_describe=True)
        self.queries = Counter(
            "pointsman_queries",
            "Queries by resolved connection, route source and outcome",
            ["connection_id", "source", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pointsman_query_duration_seconds",
            "Time from submission to the database's answer, by route source",
            ["source"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=self.registry,
        )
        self.registry.register(PoolCollector(engines))
        self.held = HeldCollector()
        self.registry.register(self.held)
        # The labelled children, found once: labels() validates, converts and
        # takes a lock on every call, and every query calls it twice.
        self._counted: dict[tuple[str, str, str], Counter] = {}
        self._timed: dict[str, Histogram] = {}

    def observe(
        self, connection_id: str, source: str, outcome: str, seconds: float
    ) -> None:
        key = (connection_id, source, outcome)
        counter = self._counted.get(key)
        if counter is None:
            counter = self._counted[key] = self.queries.labels(*key)
        counter.inc()
        histogram = self._timed.get(source)
        if histogram is None:
            histogram = self._timed[source] = self.latency.labels(source)
        histogram.observe(seconds)


class PoolCollector(Collector):
    def __init__(self, engines: EngineRegistry):
        self._engines = engines

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            key: GaugeMetricFamily(
                f"pointsman_pool_{_snake(key)}_connections",
                text,
                labels=["connection_id"],
            )
            for key, text in POOL_GAUGES.items()
        }
        families.update(
            {
                key: GaugeMetricFamily(
                    f"pointsman_{_snake(key)}", text, labels=["connection_id"]
                )
                for key, text in QUERY_GAUGES.items()
            }
        )
        open_pools = GaugeMetricFamily("pointsman_pools_open", "Pools open right now")
        ids = self._engines.open_connection_ids()
        open_pools.add_metric([], len(ids))
        for connection_id in ids:
            stats = self._engines.pool_stats(connection_id) or {}
            for key, family in families.items():
                family.add_metric([connection_id], float(stats.get(key, 0)))
        server = self._engines.connection_stats()
        opened = GaugeMetricFamily(
            "pointsman_open_database_connections",
            "Database connections open in this process, against the server-wide cap",
        )
        opened.add_metric([], float(server.get("openConnections", 0)))
        yield open_pools
        yield opened
        yield from families.values()


class HeldCollector(Collector):
    """The memory results held for ``query/wait`` take (``bytes``: set by
    whoever keeps the jobs)."""

    def __init__(self) -> None:
        self.bytes: Callable[[], int] = lambda: 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        held = GaugeMetricFamily(
            "pointsman_held_result_bytes",
            "Memory taken by results held for query/wait, against"
            " POINTSMAN_HELD_RESULTS_TOTAL_BYTES",
        )
        held.add_metric([], float(self.bytes()))
        yield held


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
