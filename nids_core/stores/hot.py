"""The hot store's writes and lookups (its tables: `hot_schema`; where they live: `hot_backend`).

Writes are keyed so that replaying a message, a batch or a backfill changes nothing:
`flows` is keyed on Zeek's `uid` (the lowest Kafka provenance wins, whatever the order of
delivery), `quarantine` on (topic, partition, offset).

`flows` has no primary-key index: the upsert finds stored copies of the batch's uids with
one anti-join per batch, over only the stored rows whose `ts` can equal a batch row's. A
copy of a record (a redelivery, a replayed batch, a backfill) carries the record's `uid`
and `ts` both, so a lookup bounded to the batch's `ts` ranges finds every one of them, and
DuckDB skips every row group whose `ts` zone map lies outside those ranges: rows are
appended in arrival order, so the lookup touches the last minutes of the table, not the
24 hours it holds. An ART index would cost about twice as much per inserted row, hold
every uid of the last 24 h in memory, and add nothing: on a DuckDB file every writer of `flows`
holds the `duckdb` pool (size 1) and DuckDB's file lock, so no two upserts overlap; on a
DuckLake, writers that share a uid hold it in PostgreSQL one after the other
(`key_locks`), so the second one's anti-join sees the first one's rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl

from nids_core.schema import FLOW_COLUMNS
from nids_core.stores.hot_backend import HotBackend, as_backend

PREDICTION_COLUMNS = ("uid", "score", "predicted_label", "model_version", "predicted_at")


_PROVENANCE = ("topic", "partition", "offset")
_QUOTED = {"partition": '"partition"', "offset": '"offset"'}


def _q(col: str) -> str:
    return _QUOTED.get(col, col)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """BEGIN … COMMIT, or ROLLBACK on any error (and re-raise). A COMMIT that fails (on a
    DuckLake, one that lost to a concurrent delete) has already ended the transaction."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def read_only_query(
    store: HotBackend | str | Path, sql: str, wait_s: float = 60.0, params: list | None = None
) -> list[tuple]:
    """Rows of a query on the hot store opened read-only (a DuckDB file's path, or a
    backend); on a DuckDB file it waits while a writer in another process holds the lock."""
    with as_backend(store).connect(read_only=True, wait_s=wait_s) as con:
        return con.execute(sql, params).fetchall()


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


# Batch timestamps further apart than this start a new lookup range (a late record does
# not widen one range over the hours between it and the rest); at most MAX_TS_RANGES.
TS_RANGE_GAP = timedelta(minutes=5)
MAX_TS_RANGES = 16


@dataclass(frozen=True)
class TsRanges:
    """Closed `ts` intervals that hold every `ts` of a batch: a SQL condition that lets
    DuckDB skip the row groups outside them."""

    bounds: tuple[tuple[datetime, datetime], ...]

    @classmethod
    def of(cls, ts: pl.Series) -> TsRanges:
        values = ts.drop_nulls().unique().sort()
        if values.is_empty():
            return cls(())
        gaps = values.diff().slice(1)
        # Split at the widest gaps above TS_RANGE_GAP, at most MAX_TS_RANGES - 1 of them.
        wide = (
            pl.DataFrame({"at": pl.int_range(1, values.len(), eager=True), "gap": gaps})
            .filter(pl.col("gap") > TS_RANGE_GAP)
            .top_k(MAX_TS_RANGES - 1, by="gap")
            .sort("at")["at"]
            .to_list()
        )
        starts = [0, *wide]
        ends = [*(i - 1 for i in wide), values.len() - 1]
        return cls(tuple((values[a], values[b]) for a, b in zip(starts, ends, strict=True)))

    @classmethod
    def of_windows(cls, starts: pl.Series, width: timedelta) -> TsRanges:
        """Ranges holding every window [start, start + width) of `starts`."""
        ranges = cls.of(starts)
        return cls(tuple((lo, hi + width) for lo, hi in ranges.bounds))

    def sql(self, column: str = "ts", name: str = "ts") -> tuple[str, dict[str, datetime]]:
        """(condition, parameters named `<name>_lo<i>`, `<name>_hi<i>`) true for rows whose
        `column` lies in one of the ranges."""
        if not self.bounds:
            return "false", {}
        terms, params = [], {}
        for i, (lo, hi) in enumerate(self.bounds):
            terms.append(f"{column} BETWEEN ${name}_lo{i} AND ${name}_hi{i}")
            params[f"{name}_lo{i}"], params[f"{name}_hi{i}"] = lo, hi
        return "(" + " OR ".join(terms) + ")", params


def upsert_flows(con: duckdb.DuckDBPyConnection, flows: pl.DataFrame) -> UpsertCounts:
    """Upsert canonical flows with provenance into `flows`, keyed on uid.

    A uid already stored is replaced only by a copy with a lower Kafka provenance, so the
    table is the same whatever the order in which duplicates arrive. Runs in the caller's
    transaction.
    """
    unique = dedupe_batch(flows)
    cols = [*FLOW_COLUMNS, *_PROVENANCE]
    stored_in_range, params = TsRanges.of(unique["ts"]).sql("f.ts")
    con.register("_batch", unique.select(cols).to_arrow())
    try:
        col_list = ", ".join(_q(c) for c in cols)
        # Anti-join against the stored rows whose ts can be a batch row's (files made with a
        # uid primary key work too).
        inserted = con.execute(
            f"INSERT INTO flows ({col_list}, ingested_at) SELECT {col_list}, now() FROM _batch "
            f"WHERE uid NOT IN (SELECT f.uid FROM flows f WHERE {stored_in_range})",
            params,
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
                f"WHERE f.uid = b.uid AND {stored_in_range} AND {lower}",
                params,
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
