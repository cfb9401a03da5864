"""What the benchmark's processes share: the SQL, the pool settings, stats.

The direct-driver floor and the bare endpoint use psycopg 3's
``AsyncConnectionPool`` with pointsman's default pool size (``poolSize`` 5,
``engines/limits.py``) per database and the session settings pointsman's
PostgreSQL engine uses (autocommit, ``statement_timeout`` set on every
session); pointsman itself runs on its own pool (``engines/pool.py``).
"""

from __future__ import annotations

import math
import os
from typing import Any

from psycopg import AsyncConnection
from psycopg.sql import SQL, Literal
from psycopg_pool import AsyncConnectionPool

PG_HOST = os.environ.get("BENCH_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BENCH_PG_PORT", "5432"))
PG_USER = os.environ.get("BENCH_PG_USER", "postgres")

# pointsman's default ``options.poolSize`` (engines/base.py DEFAULT_POOL_SIZE)
POOL_SIZE = 5
QUERY_TIMEOUT_SECONDS = 900

COLUMNS = "id, name, amount, created_at"
SCENARIOS: dict[str, str] = {
    "select 1": "select 1",
    "100 rows": f"select {COLUMNS} from items order by id limit 100",
    "10,000 rows": f"select {COLUMNS} from items order by id",
}
ROW_COUNTS = {"select 1": 1, "100 rows": 100, "10,000 rows": 10_000}


def make_pool(dbname: str, size: int = POOL_SIZE) -> AsyncConnectionPool[Any]:
    """A pool configured like pointsman's ``PostgresEngine._make_pool``."""

    async def configure(conn: AsyncConnection[Any]) -> None:
        timeout_ms = Literal(QUERY_TIMEOUT_SECONDS * 1000)
        await conn.execute(SQL("set statement_timeout = {}").format(timeout_ms))

    return AsyncConnectionPool(
        min_size=0,
        max_size=size,
        kwargs={
            "host": PG_HOST,
            "port": PG_PORT,
            "dbname": dbname,
            "user": PG_USER,
            "connect_timeout": 10,
            "application_name": "pointsman-bench",
            "autocommit": True,
        },
        configure=configure,
        name=f"bench:{dbname}",
        open=False,
        timeout=float(QUERY_TIMEOUT_SECONDS),
        max_idle=300.0,
        max_lifetime=3600.0,
        reconnect_timeout=0.0,
    )


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not ordered:
        return float("nan")
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summarise(latencies: list[float], duration: float) -> dict[str, Any]:
    ordered = sorted(latencies)
    count = len(ordered)
    return {
        "requests": count,
        "qps": count / duration if duration > 0 else 0.0,
        "p50_ms": percentile(ordered, 0.50) * 1000,
        "p90_ms": percentile(ordered, 0.90) * 1000,
        "p99_ms": percentile(ordered, 0.99) * 1000,
        "max_ms": (ordered[-1] * 1000) if ordered else float("nan"),
        "mean_ms": (sum(ordered) / count * 1000) if count else float("nan"),
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs so far, from /proc/stat."""
    with open("/proc/stat") as handle:
        values = [int(v) for v in handle.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already in user
    return total - idle, total


def busy_cores_since(before: tuple[int, int], seconds: float) -> float:
    busy = machine_ticks()[0] - before[0]
    return busy / os.sysconf("SC_CLK_TCK") / seconds


def rss_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MB (1024 * 1024 bytes)."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024
    return found
