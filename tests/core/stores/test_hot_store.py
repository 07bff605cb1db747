"""The keyed upsert into the hot `flows` table, on real DuckDB files."""

from datetime import timedelta

import duckdb
import polars as pl

from nids_core.stores.hot import MAX_TS_RANGES, TS_RANGE_GAP, TsRanges, upsert_flows
from nids_core.stores.hot_schema import ensure_schema
from nids_core.zeek.files import read_zeek_file
from tests.support.deployment import FIXTURES


def batch(partition: int, first_offset: int, rows: int = 20) -> pl.DataFrame:
    flows = read_zeek_file(FIXTURES / "conn.log").flows.head(rows)
    return flows.with_columns(
        pl.lit("zeek.conn").alias("topic"),
        pl.lit(partition, dtype=pl.Int32).alias("partition"),
        (pl.int_range(pl.len(), dtype=pl.Int64) + first_offset).alias("offset"),
    )


def stored(con) -> dict[str, tuple[int, int]]:
    rows = con.execute('SELECT uid, "partition", "offset" FROM flows').fetchall()
    return {uid: (p, o) for uid, p, o in rows}


def test_upsert_stores_each_uid_once_and_lowest_provenance_wins(tmp_path):
    con = duckdb.connect(str(tmp_path / "hot.duckdb"))
    ensure_schema(con)
    first = batch(partition=1, first_offset=100)
    uids = first["uid"].to_list()
    assert len(set(uids)) == 20

    # A batch holding each record twice stores each once, from the lower offset.
    doubled = pl.concat([first, first.with_columns(pl.col("offset") + 1000)])
    counts = upsert_flows(con, doubled)
    assert (counts.inserted, counts.duplicates_in_batch, counts.already_present) == (20, 20, 0)
    assert stored(con) == {u: (1, 100 + i) for i, u in enumerate(uids)}

    # Redelivered from a higher offset: nothing changes.
    counts = upsert_flows(con, first.with_columns(pl.col("offset") + 5000))
    assert (counts.inserted, counts.already_present, counts.replaced) == (0, 20, 0)
    assert stored(con) == {u: (1, 100 + i) for i, u in enumerate(uids)}

    # The same records from a lower partition: they replace the stored copies, and new
    # uids in the same batch are inserted.
    lower = batch(partition=0, first_offset=7, rows=25)
    counts = upsert_flows(con, lower)
    assert (counts.inserted, counts.already_present, counts.replaced) == (5, 20, 20)
    want = {u: (0, 7 + i) for i, u in enumerate(lower["uid"].to_list())}
    assert stored(con) == want
    assert con.execute("SELECT count(*), count(DISTINCT uid) FROM flows").fetchone() == (25, 25)
    con.close()


def test_ts_ranges_cover_every_timestamp_and_split_at_the_widest_gaps():
    ts = read_zeek_file(FIXTURES / "conn.log").flows["ts"]
    hours = pl.Series([ts.min() - timedelta(hours=h) for h in range(1, 40)])
    batch_ts = pl.concat([ts, hours, ts.head(3)])  # late records and repeated values
    ranges = TsRanges.of(batch_ts)
    assert 1 < len(ranges.bounds) <= MAX_TS_RANGES
    assert all(any(lo <= t <= hi for lo, hi in ranges.bounds) for t in batch_ts)
    # Ranges are ordered and apart by more than TS_RANGE_GAP; the fixture's own span, whose
    # gaps are all smaller, stays one range.
    for (_, hi), (lo, _) in zip(ranges.bounds, ranges.bounds[1:], strict=False):
        assert lo - hi > TS_RANGE_GAP
    assert TsRanges.of(ts).bounds == ((ts.min(), ts.max()),)
    assert TsRanges.of(ts.head(0)).bounds == ()


def test_a_late_copy_is_found_among_rows_of_other_hours(tmp_path):
    """The bounded lookup finds a stored copy wherever its ts lies, also in a batch whose
    other rows are hours later, and never matches a row outside the batch's ranges."""
    con = duckdb.connect(str(tmp_path / "hot.duckdb"))
    ensure_schema(con)
    early = batch(partition=0, first_offset=0, rows=10)
    later = (
        batch(partition=0, first_offset=10, rows=30)
        .tail(20)
        .with_columns(pl.col("ts") + timedelta(hours=6))
    )
    upsert_flows(con, early)
    upsert_flows(con, later)
    # One redelivered early record (from a higher offset) arrives with new flows of hour 6.
    mixed = pl.concat(
        [
            early.head(1).with_columns(pl.col("offset") + 500),
            later.with_columns(pl.col("uid") + "-new", pl.col("offset") + 100),
        ]
    )
    counts = upsert_flows(con, mixed)
    assert (counts.inserted, counts.already_present, counts.replaced) == (20, 1, 0)
    assert con.execute("SELECT count(*), count(DISTINCT uid) FROM flows").fetchone() == (50, 50)
    assert stored(con)[early["uid"][0]] == (0, 0)
    con.close()


def test_quarantine_keeps_rejects_of_reused_offsets(tmp_path):
    from nids_core.stores.hot import insert_quarantine

    con = duckdb.connect(str(tmp_path / "hot.duckdb"))
    ensure_schema(con)
    con.execute("INSERT INTO quarantine VALUES ('t', 0, 5, 'old', 'invalid JSON', now())")

    def rejects(raw: bytes) -> pl.DataFrame:
        return pl.DataFrame(
            {"topic": ["t"], "partition": [0], "offset": [5], "raw": [raw], "error": ["x"]},
            schema_overrides={"partition": pl.Int32, "raw": pl.Binary},
        )

    assert insert_quarantine(con, rejects(b"old")) == 0  # the same reject again: kept once
    assert insert_quarantine(con, rejects(b"new")) == 1  # another record at offset 5: added
    rows = con.execute('SELECT "offset", raw FROM quarantine ORDER BY raw').fetchall()
    assert rows == [(5, b"new"), (5, b"old")]
    con.close()
