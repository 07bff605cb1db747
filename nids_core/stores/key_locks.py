"""Keys held in PostgreSQL while a DuckLake transaction that writes them commits.

DuckLake has no unique keys, and two transactions that both append to `flows` commit side
by side without a conflict: two ingest runs that each hold a copy of one record (a producer
that sent it to two partitions) would both find it missing and both insert it. So a writer
first inserts its keys (a 60-bit digest of each uid and quarantine offset) into the
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


def key_digests(con: duckdb.DuckDBPyConnection, keys: pl.Series) -> list[int]:
    """Distinct 60-bit digests of `keys`, sorted (the first 15 hex digits of md5: the same
    in every process and version, whatever bytes a hostile uid holds, and a bigint key,
    which PostgreSQL indexes at about half the cost of text)."""
    if keys.is_empty():
        return []
    con.register("_keys", pl.DataFrame({"k": keys.cast(pl.String)}).to_arrow())
    try:
        rows = con.execute(
            "SELECT DISTINCT CAST(('0x' || left(md5(k), 15)) AS BIGINT) AS d FROM _keys "
            "WHERE k IS NOT NULL ORDER BY d"
        ).fetchall()
    finally:
        con.unregister("_keys")
    return [r[0] for r in rows]


@contextmanager
def hold_keys(catalog: str, digests: list[int], wait_s: float = 300.0) -> Iterator[float]:
    """Hold `digests` (sorted) until the block ends; yields the seconds spent waiting for
    them. Raises TimeoutError if another writer holds one for longer than `wait_s`."""
    pg = psycopg2.connect(catalog)
    t0 = time.perf_counter()
    try:
        with pg.cursor() as cur:
            cur.execute(f"SET LOCAL lock_timeout = '{int(wait_s * 1000)}ms'")
            cur.execute("CREATE TEMP TABLE _held (key bigint) ON COMMIT DROP")
            cur.copy_expert(
                "COPY _held FROM STDIN", io.StringIO("".join(f"{d}\n" for d in digests))
            )
            try:
                # A plain INSERT: a key another writer holds makes it wait for that writer's
                # transaction, which always ends in a rollback, so it then goes on (and it
                # costs half of ON CONFLICT's speculative insert).
                cur.execute("INSERT INTO nids_key_locks (key) SELECT key FROM _held ORDER BY key")
            except psycopg2.errors.LockNotAvailable as exc:
                raise TimeoutError(
                    f"another hot-store writer held one of {len(digests)} keys for over "
                    f"{wait_s:.0f} s"
                ) from exc
        yield time.perf_counter() - t0
    finally:
        pg.rollback()
        pg.close()
