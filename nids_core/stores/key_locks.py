"""Keys held in PostgreSQL while a DuckLake transaction that writes them commits.

DuckLake has no unique keys, and two transactions that both append to `flows` commit side
by side without a conflict: two ingest runs that each hold a copy of one record (a producer
that sent it to two partitions) would both find it missing and both insert it. So a writer
first inserts its keys (a digest of each uid, each quarantine offset) into the
`nids_key_locks` table of the lake's own PostgreSQL database, in a transaction it keeps
open until its DuckLake commit is done, and then rolls back. PostgreSQL makes a second
writer inserting one of those keys wait until the first has finished; the second's DuckLake
transaction starts after that, so its anti-join sees the first's rows. Writers with no key
in common never wait on each other. Keys are inserted in sorted order, so two writers
cannot deadlock; nothing is ever committed to the table, and a writer that dies (SIGKILL)
releases its keys with its connection.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb
import polars as pl
import psycopg2
import psycopg2.errors


def key_digests(con: duckdb.DuckDBPyConnection, keys: pl.Series) -> list[str]:
    """Distinct 16-hex-digit digests of `keys`, sorted (md5: the same in every process and
    version, and safe to COPY whatever bytes a hostile uid holds)."""
    if keys.is_empty():
        return []
    con.register("_keys", pl.DataFrame({"k": keys.cast(pl.String)}).to_arrow())
    try:
        rows = con.execute(
            "SELECT DISTINCT left(md5(k), 16) AS d FROM _keys WHERE k IS NOT NULL ORDER BY d"
        ).fetchall()
    finally:
        con.unregister("_keys")
    return [r[0] for r in rows]


@contextmanager
def hold_keys(catalog: str, digests: list[str], wait_s: float = 300.0) -> Iterator[float]:
    """Hold `digests` (sorted) until the block ends; yields the seconds spent waiting for
    them. Raises TimeoutError if another writer holds one for longer than `wait_s`."""
    pg = psycopg2.connect(catalog)
    t0 = time.perf_counter()
    try:
        with pg.cursor() as cur:
            cur.execute(f"SET LOCAL lock_timeout = '{int(wait_s * 1000)}ms'")
            cur.execute("CREATE TEMP TABLE _held (key text) ON COMMIT DROP")
            cur.copy_expert(
                "COPY _held FROM STDIN", io.StringIO("".join(f"{d}\n" for d in digests))
            )
            try:
                cur.execute(
                    "INSERT INTO nids_key_locks (key) SELECT key FROM _held ORDER BY key "
                    "ON CONFLICT DO NOTHING"
                )
            except psycopg2.errors.LockNotAvailable as exc:
                raise TimeoutError(
                    f"another hot-store writer held one of {len(digests)} keys for over "
                    f"{wait_s:.0f} s"
                ) from exc
        yield time.perf_counter() - t0
    finally:
        pg.rollback()
        pg.close()
