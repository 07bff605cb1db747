"""The hot store on DuckLake: the same tables as Parquet files on S3 (or a folder), their
snapshots in a PostgreSQL catalog, so DuckDB clients in many processes on many nodes read
and write them at once, each transaction seeing one snapshot.

The DuckDB extensions (ducklake, postgres_scanner, httpfs) are loaded from the files the
`duckdb-extension-*` packages install beside the project; nothing is downloaded at run time.
Each process keeps one DuckDB instance per lake (attaching costs a few hundred ms) and hands
out a cursor per connection; every cursor's transaction reads the newest snapshot.

The catalog is created once: the first process to find it missing takes a PostgreSQL
advisory lock, creates the DuckLake metadata and the hot tables, and every other process
waits on that lock instead of racing it (two fresh ATTACHes at once fail in DuckLake's own
catalog creation).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import duckdb
import psycopg2

LAKE = "hot"  # the name the lake is attached under; every hot-store query runs in it
_EXTENSIONS = {
    "postgres_scanner": "duckdb_extension_postgres_scanner",
    "ducklake": "duckdb_extension_ducklake",
    "httpfs": "duckdb_extension_httpfs",
}
# pg_advisory_lock key for the catalog's creation: any 64-bit constant of our own.
_CREATE_LOCK = 0x6E6964735F686F74  # "nids_hot"
# DuckLake's commit retries (it settles snapshot-id races itself): a little more patient
# than its default of 10 when several ingest runs commit each second.
_MAX_COMMIT_RETRIES = 30


class LakeError(RuntimeError):
    """The lake cannot be reached or used as configured; the message says which setting."""


@dataclass(frozen=True)
class S3Access:
    """Where and how the lake's data files are read and written on S3."""

    endpoint_url: str | None = None
    key_id: str | None = None
    secret: str | None = None
    region: str | None = None


@dataclass(frozen=True)
class LakeLocation:
    """A DuckLake: `catalog`, a libpq connection string of its PostgreSQL database (the
    password comes from PGPASSWORD, never from the string); `data_path`, an s3:// prefix or
    a folder; writes of fewer than `inline_rows` rows are kept in the catalog itself until
    the lifecycle job flushes them into files."""

    catalog: str
    data_path: str
    s3: S3Access | None = None
    inline_rows: int = 1000


def extension_file(name: str) -> Path:
    """The extension's binary as its package installed it."""
    module = importlib.import_module(_EXTENSIONS[name])
    found = sorted(Path(module.__file__).parent.glob(f"extensions/*/{name}.duckdb_extension"))
    if not found:
        raise LakeError(f"package {_EXTENSIONS[name]} holds no {name}.duckdb_extension")
    return found[-1]


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _s3_secret_sql(s3: S3Access) -> str:
    opts = ["TYPE s3", "URL_STYLE 'path'"]
    if s3.endpoint_url:
        url = urlparse(s3.endpoint_url)
        opts.append(f"ENDPOINT {_literal(url.netloc or url.path)}")
        opts.append(f"USE_SSL {'true' if url.scheme == 'https' else 'false'}")
    if s3.key_id:
        opts.append(f"KEY_ID {_literal(s3.key_id)}")
    if s3.secret:
        opts.append(f"SECRET {_literal(s3.secret)}")
    if s3.region:
        opts.append(f"REGION {_literal(s3.region)}")
    return f"CREATE OR REPLACE SECRET nids_hot_s3 ({', '.join(opts)})"


def _new_instance(location: LakeLocation, read_only: bool) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(
        config={"autoinstall_known_extensions": False, "autoload_known_extensions": False}
    )
    try:
        for name in _EXTENSIONS:
            con.execute(f"LOAD {_literal(str(extension_file(name)))}")
        if location.data_path.startswith("s3://"):
            con.execute(_s3_secret_sql(location.s3 or S3Access()))
        con.execute(f"SET ducklake_max_retry_count = {_MAX_COMMIT_RETRIES}")
        opts = [f"DATA_PATH {_literal(location.data_path.rstrip('/') + '/')}"]
        opts.append(f"DATA_INLINING_ROW_LIMIT {int(location.inline_rows)}")
        if read_only:
            opts.append("READ_ONLY")
        con.execute(
            f"ATTACH {_literal('ducklake:postgres:' + location.catalog)} AS {LAKE} "
            f"({', '.join(opts)})"
        )
    except duckdb.Error as exc:
        con.close()
        raise LakeError(
            f"cannot attach the DuckLake hot store (catalog {location.catalog!r}, data "
            f"{location.data_path!r}): {exc}"
        ) from exc
    return con


def _missing_tables(pg, names: Iterable[str]) -> set[str] | None:
    """The hot tables the catalog lacks (None: no catalog or no key-lock table yet), read
    from DuckLake's own metadata tables in PostgreSQL."""
    with pg.cursor() as cur:
        cur.execute(
            "SELECT to_regclass('ducklake_table') IS NOT NULL "
            "AND to_regclass('nids_key_locks') IS NOT NULL"
        )
        if not cur.fetchone()[0]:
            return None
        cur.execute("SELECT table_name FROM ducklake_table WHERE end_snapshot IS NULL")
        return set(names) - {r[0] for r in cur.fetchall()}


class _Instances:
    """One DuckDB instance per (lake, read-only) in this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_key: dict[tuple[LakeLocation, bool], duckdb.DuckDBPyConnection] = {}

    def get(
        self,
        location: LakeLocation,
        read_only: bool,
        create_tables: Callable[[duckdb.DuckDBPyConnection], None],
        table_names: Iterable[str],
    ) -> duckdb.DuckDBPyConnection:
        key = (location, read_only)
        with self._lock:
            if key not in self._by_key:
                ensure_catalog(location, create_tables, table_names)
                self._by_key[key] = _new_instance(location, read_only)
            return self._by_key[key]

    def close_all(self) -> None:
        with self._lock:
            for con in self._by_key.values():
                con.close()
            self._by_key.clear()


_instances = _Instances()


def pg_connect(location: LakeLocation):
    try:
        return psycopg2.connect(location.catalog)
    except psycopg2.Error as exc:
        raise LakeError(
            f"cannot reach the hot store's PostgreSQL catalog {location.catalog!r}: "
            f"{str(exc).strip()}"
        ) from exc


def ensure_catalog(
    location: LakeLocation,
    create_tables: Callable[[duckdb.DuckDBPyConnection], None],
    table_names: Iterable[str],
) -> bool:
    """Create the lake's catalog, its tables and the key-lock table if any is missing, once
    across every process (under a PostgreSQL advisory lock); True if this call created
    something."""
    names = list(table_names)
    pg = pg_connect(location)
    try:
        pg.autocommit = True
        if _missing_tables(pg, names) == set():
            return False
        with pg.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", [_CREATE_LOCK])
            try:
                # Lock rows are never committed (see key_locks), so the table stays empty and
                # need not be logged.
                cur.execute(
                    "CREATE UNLOGGED TABLE IF NOT EXISTS nids_key_locks (key bigint PRIMARY KEY)"
                )
                if _missing_tables(pg, names) == set():
                    return False  # another process created them while this one waited
                con = _new_instance(location, read_only=False)
                try:
                    cursor = con.cursor()
                    cursor.execute(f"USE {LAKE}")
                    create_tables(cursor)
                    return True
                finally:
                    con.close()
            finally:
                cur.execute("SELECT pg_advisory_unlock(%s)", [_CREATE_LOCK])
    finally:
        pg.close()


def connect_lake(
    location: LakeLocation,
    create_tables: Callable[[duckdb.DuckDBPyConnection], None],
    table_names: Iterable[str],
    read_only: bool = False,
) -> duckdb.DuckDBPyConnection:
    """A connection whose default database is the lake (its tables created the first time
    any process connects); close it when done (the process's instance stays)."""
    cursor = _instances.get(location, read_only, create_tables, table_names).cursor()
    cursor.execute(f"USE {LAKE}")
    return cursor


def close_lakes() -> None:
    """Close this process's lake instances (tests, and before a fork)."""
    _instances.close_all()


def is_conflict(exc: BaseException) -> bool:
    """A DuckLake commit that lost to a concurrent one on the same table (another writer
    deleted from it, or one of its files was merged): safe to retry from the start."""
    return isinstance(exc, duckdb.TransactionException) and "conflict" in str(exc).lower()
