"""Server settings, read from the environment and the command line."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_DATA_DIR = ".pointsman"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    secret_keys: tuple[str, ...] = ()
    query_wait_seconds: float = 30.0
    rate_limit_per_minute: int = 600
    pool_idle_seconds: float = 300.0
    max_open_connections: int = 200
    stream_threshold_rows: int = 10_000
    held_result_max_rows: int = 100_000
    held_result_max_bytes: int = 128 * 1024 * 1024
    held_results_total_bytes: int = 512 * 1024 * 1024

    @classmethod
    def from_env(cls, database_url: str | None = None) -> Settings:
        data_dir = Path(os.environ.get("POINTSMAN_DATA_DIR", DEFAULT_DATA_DIR))
        url = (
            database_url
            or os.environ.get("POINTSMAN_DATABASE_URL")
            or f"sqlite:///{data_dir / 'store.db'}"
        )
        keys = tuple(
            key.strip()
            for key in os.environ.get("POINTSMAN_SECRET_KEY", "").split(",")
            if key.strip()
        )
        return cls(
            data_dir=data_dir,
            database_url=url,
            secret_keys=keys,
            query_wait_seconds=float(
                os.environ.get("POINTSMAN_QUERY_WAIT_SECONDS", "30")
            ),
            rate_limit_per_minute=int(
                os.environ.get("POINTSMAN_RATE_LIMIT_PER_MINUTE", "600")
            ),
            pool_idle_seconds=float(
                os.environ.get("POINTSMAN_POOL_IDLE_SECONDS", "300")
            ),
            max_open_connections=int(
                os.environ.get("POINTSMAN_MAX_OPEN_CONNECTIONS", "200")
            ),
            stream_threshold_rows=int(
                os.environ.get("POINTSMAN_STREAM_THRESHOLD_ROWS", "10000")
            ),
            held_result_max_rows=int(
                os.environ.get("POINTSMAN_HELD_RESULT_MAX_ROWS", "100000")
            ),
            held_result_max_bytes=int(
                os.environ.get("POINTSMAN_HELD_RESULT_MAX_BYTES", str(128 * 1024**2))
            ),
            held_results_total_bytes=int(
                os.environ.get("POINTSMAN_HELD_RESULTS_TOTAL_BYTES", str(512 * 1024**2))
            ),
        )

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]
