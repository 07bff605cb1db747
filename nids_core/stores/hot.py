"""The hot store: one DuckDB file with tables `flows`, `predictions`, `quarantine`, `alerts`.

Writes are keyed so that replaying a message, a batch or a backfill changes nothing:
`flows` is keyed on Zeek's `uid` (the lowest Kafka provenance wins, whatever the order of
delivery), `quarantine` on (topic, partition, offset).

`flows` has no primary-key index: the upsert finds stored uids with one anti-join per
batch, which DuckDB runs as a hash join on the batch's uids over the `uid` column. An ART
index would cost about twice as much per inserted row, hold every uid of the last 24 h in
memory, and add nothing: every writer of `flows` holds the `duckdb` pool (size 1) and
DuckDB's file lock, so no two upserts overlap.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from nids_core.schema import FLOW_COLUMNS, flows_ddl

# Generated from the flow schema, so the table, its schema check and the value rules
# cannot disagree.
FLOWS_DDL = flows_ddl()

PREDICTIONS_DDL = """
CREATE TABLE IF NOT EXISTS predictions (
    uid VARCHAR PRIMARY KEY,
    score DOUBLE NOT NULL,
    predicted_label VARCHAR NOT NULL,
    model_version VARCHAR NOT NULL,
    predicted_at TIMESTAMPTZ NOT NULL
)
"""

# Keyed by (topic, partition, offset, raw), not by offset alone: offsets are reused after a
# broker restart or a recreated topic, and the reject of another record at a reused offset
# must be kept beside the earlier one. A key index would not cover `raw` (a BLOB), and every
# writer holds the duckdb pool, so the key is kept by the insert itself.
QUARANTINE_DDL = """
CREATE TABLE IF NOT EXISTS quarantine (
    topic VARCHAR NOT NULL,
    "partition" INTEGER NOT NULL,
    "offset" BIGINT NOT NULL,
    raw BLOB,
    error VARCHAR NOT NULL,
    quarantined_at TIMESTAMPTZ NOT NULL
)
"""

_PROVENANCE = ("topic", "partition", "offset")
_QUOTED = {"partition": '"partition"', "offset": '"offset"'}


def _q(col: str) -> str:
    return _QUOTED.get(col, col)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN … COMMIT, or ROLLBACK on any error (and re-raise)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def read_only_query(
    path: str | Path, sql: str, wait_s: float = 60.0, params: list | None = None
) -> list[tuple]:
    """Rows of a query on the hot store opened read-only, waiting while a writer (a run in
    another process) holds DuckDB's file lock."""
    import time

    deadline = time.monotonic() + wait_s
    while True:
        try:
            con = duckdb.connect(str(path), read_only=True)
        except duckdb.IOException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
            continue
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the hot tables if they do not exist."""
    from nids_core.serving.alerts import ALERTS_DDL

    for ddl in (FLOWS_DDL, PREDICTIONS_DDL, QUARANTINE_DDL, ALERTS_DDL):
        con.execute(ddl)
    _drop_quarantine_offset_key(con)


def _drop_quarantine_offset_key(con: duckdb.DuckDBPyConnection) -> None:
    """Files made before offsets were known to be reused keyed `quarantine` on the offset
    alone; rebuild such a table without that key (rows kept as they are)."""
    keyed = con.execute(
        "SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'quarantine' "
        "AND constraint_type = 'PRIMARY KEY'"
    ).fetchone()[0]
    if not keyed:
        return
    with transaction(con):
        con.execute("CREATE TABLE _quarantine_rekeyed AS SELECT * FROM quarantine")
        con.execute("DROP TABLE quarantine")
        con.execute("ALTER TABLE _quarantine_rekeyed RENAME TO quarantine")


@dataclass(frozen=True)
class UpsertCounts:
    """What one batch did to `flows`."""

    received: int
    duplicates_in_batch: int
    already_present: int
    inserted: int
    replaced: int


def dedupe_batch(flows: pl.DataFrame) -> pl.DataFrame:
    """One row per uid, the lowest (topic, partition, offset) winning."""
    return flows.sort(list(_PROVENANCE)).unique("uid", keep="first", maintain_order=True)


def upsert_flows(con: duckdb.DuckDBPyConnection, flows: pl.DataFrame) -> UpsertCounts:
    """Upsert canonical flows with provenance into `flows`, keyed on uid.

    A uid already stored is replaced only by a copy with a lower Kafka provenance, so the
    table is the same whatever the order in which duplicates arrive. Runs in the caller's
    transaction.
    """
    unique = dedupe_batch(flows)
    cols = [*FLOW_COLUMNS, *_PROVENANCE]
    con.register("_batch", unique.select(cols).to_arrow())
    try:
        col_list = ", ".join(_q(c) for c in cols)
        # Anti-join: only uids not stored yet (files made with a uid primary key work too).
        inserted = con.execute(
            f"INSERT INTO flows ({col_list}, ingested_at) SELECT {col_list}, now() FROM _batch "
            "WHERE uid NOT IN (SELECT uid FROM flows)"
        ).fetchone()[0]
        already = unique.height - int(inserted)
        replaced = 0
        if already:
            lower = (
                '(b.topic < f.topic OR (b.topic = f.topic AND (b."partition" < f."partition" '
                'OR (b."partition" = f."partition" AND b."offset" < f."offset"))))'
            )
            sets = ", ".join(f"{_q(c)} = b.{_q(c)}" for c in cols if c != "uid")
            replaced = con.execute(
                f"UPDATE flows f SET {sets}, ingested_at = now() FROM _batch b "
                f"WHERE f.uid = b.uid AND {lower}"
            ).fetchone()[0]
    finally:
        con.unregister("_batch")
    return UpsertCounts(
        received=flows.height,
        duplicates_in_batch=flows.height - unique.height,
        already_present=int(already),
        inserted=int(inserted),
        replaced=int(replaced),
    )


def insert_quarantine(con: duckdb.DuckDBPyConnection, rejects: pl.DataFrame) -> int:
    """Insert rejects (topic, partition, offset, raw, error); a reject already there (same
    offset and bytes) is kept, another record's reject at a reused offset is added."""
    if rejects.is_empty():
        return 0
    con.register(
        "_rejects", rejects.select("topic", "partition", "offset", "raw", "error").to_arrow()
    )
    try:
        return int(
            con.execute(
                'INSERT INTO quarantine (topic, "partition", "offset", raw, error, quarantined_at) '
                'SELECT r.topic, r."partition", r."offset", r.raw, r.error, now() FROM _rejects r '
                "WHERE NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.topic = r.topic "
                'AND q."partition" = r."partition" AND q."offset" = r."offset" '
                "AND q.raw IS NOT DISTINCT FROM r.raw)"
            ).fetchone()[0]
        )
    finally:
        con.unregister("_rejects")
