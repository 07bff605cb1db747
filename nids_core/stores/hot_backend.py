"""Where the hot tables live: one DuckDB file (the embedded default) or a DuckLake (the
production profile: catalog in PostgreSQL, data on S3). Code that talks to the hot store
gets a connection from one of these and runs the same SQL on either; only the writers ask
the backend for what differs (`hold` and `retrying`).

- `DuckDBFile`: one writing process at a time (DuckDB's file lock, and the `duckdb` pool
  of size 1 in Dagster); a read-only connection waits while a writer holds the file.
- `DuckLakeStore`: writers in many processes at once, each commit a snapshot; readers never
  wait on a writer. Writers of `flows` and `quarantine` hold their keys in PostgreSQL while
  they commit (nids_core.stores.key_locks), and a commit that lost to a concurrent delete
  or file merge on the same table is retried from the start.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import duckdb
import polars as pl

from nids_core.stores.hot_schema import HOT_TABLE_NAMES, ensure_lake_schema, ensure_schema
from nids_core.stores.key_locks import hold_keys, key_digests
from nids_core.stores.lake import LAKE, LakeLocation, connect_lake, is_conflict

T = TypeVar("T")

# A commit that lost to a concurrent delete or merge on its table is retried this often,
# each time after a longer pause (the lifecycle job's deletes take seconds at most).
CONFLICT_ATTEMPTS = 12
CONFLICT_FIRST_PAUSE_S = 0.05


@dataclass(frozen=True)
class DuckDBFile:
    """The hot tables in one DuckDB file."""

    path: str

    def exists(self) -> bool:
        return self.path != ":memory:" and Path(self.path).exists()

    @contextmanager
    def connect(
        self, read_only: bool = False, wait_s: float = 60.0
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection (tables created when writing); read-only ones wait up to `wait_s`
        while a writer in another process holds the file."""
        if read_only:
            con = _wait_for_file(self.path, wait_s)
        else:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            con = duckdb.connect(self.path)
        try:
            if not read_only:
                ensure_schema(con)
            yield con
        finally:
            con.close()

    def hold(self, con: duckdb.DuckDBPyConnection, keys: pl.Series) -> AbstractContextManager:
        """Nothing to hold: one process writes at a time."""
        return nullcontext(0.0)

    def retrying(self, work: Callable[[], T]) -> T:
        return work()

    def maintain(self, con: duckdb.DuckDBPyConnection, now: datetime) -> dict[str, float]:
        """A DuckDB file needs no maintenance of its own (it reuses freed blocks)."""
        return {}


def _wait_for_file(path: str, wait_s: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return duckdb.connect(str(path), read_only=True)
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# How long the lake keeps the snapshots (and the files only they need) that maintenance
# expires: a reader's snapshot older than this may lose its files.
SNAPSHOT_RETENTION = timedelta(hours=1)


@dataclass(frozen=True)
class DuckLakeStore:
    """The hot tables in a DuckLake."""

    location: LakeLocation

    def exists(self) -> bool:
        return True

    @contextmanager
    def connect(
        self, read_only: bool = False, wait_s: float = 60.0
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection on the lake (its catalog and tables created the first time any
        process connects); nothing waits on another process's writes."""
        con = connect_lake(self.location, ensure_lake_schema, HOT_TABLE_NAMES, read_only)
        try:
            yield con
        finally:
            con.close()

    def hold(self, con: duckdb.DuckDBPyConnection, keys: pl.Series) -> AbstractContextManager:
        """Hold `keys` in PostgreSQL until the block ends (see key_locks); yields the
        seconds spent waiting for another writer."""
        return hold_keys(self.location.catalog, key_digests(con, keys))

    def retrying(self, work: Callable[[], T]) -> T:
        """`work()` (one whole transaction), again from the start while its commit loses
        to a concurrent delete or merge on the same table."""
        pause = CONFLICT_FIRST_PAUSE_S
        for attempt in range(1, CONFLICT_ATTEMPTS + 1):
            try:
                return work()
            except duckdb.Error as exc:
                if not is_conflict(exc) or attempt == CONFLICT_ATTEMPTS:
                    raise
            time.sleep(pause)
            pause *= 2
        raise AssertionError("unreachable")

    def maintain(self, con: duckdb.DuckDBPyConnection, now: datetime) -> dict[str, float]:
        """DuckLake's own maintenance, each step timed: small writes kept in the catalog
        flushed into files, adjacent small files merged, snapshots older than
        SNAPSHOT_RETENTION expired and the files no snapshot needs any more deleted."""
        older = now - SNAPSHOT_RETENTION
        steps = {
            "flush_inlined_data": (f"CALL ducklake_flush_inlined_data('{LAKE}')", []),
            "merge_adjacent_files": (f"CALL ducklake_merge_adjacent_files('{LAKE}')", []),
            "expire_snapshots": (
                f"CALL ducklake_expire_snapshots('{LAKE}', older_than => ?)",
                [older],
            ),
            "cleanup_old_files": (
                f"CALL ducklake_cleanup_old_files('{LAKE}', older_than => ?)",
                [older],
            ),
        }
        seconds: dict[str, float] = {}
        for name, (sql, params) in steps.items():
            t0 = time.perf_counter()
            self.retrying(lambda sql=sql, params=params: con.execute(sql, params).fetchall())
            seconds[name] = round(time.perf_counter() - t0, 3)
        return seconds


HotBackend = DuckDBFile | DuckLakeStore


def as_backend(store: HotBackend | str | Path) -> HotBackend:
    """A backend, from one or from a DuckDB file's path."""
    return store if isinstance(store, DuckDBFile | DuckLakeStore) else DuckDBFile(str(store))
