"""Fill a hot store as a day of traffic leaves it, for the benchmarks' `--hot-rows N`.

The rows are the real IoT-23 flows, repeated with their uids made unique, stamped at an
even rate over the 24 hours before `until` and inserted in time order, the order a live
sensor inserts them. Each flow gets a prediction, as the scoring runs would have given it,
so scoring and alerts see a table that size too, with the marks of the last scoring run
and alerts refresh.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl

from nids_core.schema import FLOW_COLUMNS, PROVENANCE_SCHEMA
from nids_core.stores.cold import ColdStore
from nids_core.stores.hot_backend import DuckDBFile, HotBackend, as_backend

PREFILL_TOPIC = "bench.prefill"  # provenance of the prefilled rows, apart from the stream's
DAY = timedelta(hours=24)


def prefill_hot(hot: HotBackend | str, flows: pl.DataFrame, rows: int, until: datetime) -> float:
    """Insert `rows` flows (and their predictions) into the hot store (a DuckDB file's path
    or a backend), their ts spread evenly over [until - 24 h, until); returns the seconds it
    took."""
    t0 = time.perf_counter()
    base = flows.select(FLOW_COLUMNS).with_row_index("i").with_columns(pl.col("i").cast(pl.Int64))
    step_us = DAY.total_seconds() * 1e6 / rows
    start = until - DAY
    # Ingested as they happened, the last one a few seconds before now.
    ingested = min(until, datetime.now(UTC)) - DAY - timedelta(seconds=10)
    cols = [c for c in FLOW_COLUMNS if c not in ("uid", "ts")]
    hot = as_backend(hot)
    with hot.connect() as con:
        con.register("_base", base.to_arrow())
        n = base.height
        passes = -(-rows // n)
        per_statement = max(1, 4_000_000 // n)
        for first in range(0, passes, per_statement):
            last = min(passes, first + per_statement)
            con.execute(
                f"""
                INSERT INTO flows (uid, ts, {", ".join(cols)}, topic, "partition", "offset",
                                   ingested_at)
                SELECT b.uid || '-h' || r.range AS uid,
                       $start + to_microseconds(CAST((r.range * {n} + b.i) * {step_us} AS BIGINT)),
                       {", ".join(f"b.{c}" for c in cols)},
                       '{PREFILL_TOPIC}', 0, r.range * {n} + b.i,
                       $ingested + to_microseconds(CAST((r.range * {n} + b.i) * {step_us} AS BIGINT))
                FROM _base b CROSS JOIN range({first}, {last}) r
                WHERE r.range * {n} + b.i < {rows}
                ORDER BY 2
                """,
                {"start": start, "ingested": ingested},
            )
            # Every prefilled flow was scored a few seconds after it arrived.
            con.execute(
                "INSERT INTO predictions "
                "(uid, score, predicted_label, model_version, predicted_at, ts) "
                "SELECT uid, 0.01, 'benign', 'prefill', ingested_at + INTERVAL 5 SECOND, ts "
                f"FROM flows WHERE topic = '{PREFILL_TOPIC}' "
                f'AND "offset" >= {first * n} AND "offset" < {last * n} ORDER BY ts'
            )
        # The marks a day of scoring runs and alerts refreshes leaves.
        con.execute("DELETE FROM scoring_progress")
        con.execute("INSERT INTO scoring_progress SELECT max(ingested_at) FROM flows")
        con.execute("DELETE FROM alerts_progress")
        con.execute(
            "INSERT INTO alerts_progress SELECT max(predicted_at), max(ts) FROM predictions"
        )
        if isinstance(hot, DuckDBFile):
            con.execute("CHECKPOINT")
        else:
            hot.maintain(con, datetime.now(UTC))  # as the hourly lifecycle job leaves it
    return time.perf_counter() - t0


def prefill_cold(hot_path: str, cold: ColdStore, days: list[str]) -> dict[str, int]:
    """Write the pre-filled hot rows of `days` as those days' compacted cold files, so the
    cold days the stream reaches hold what the day's traffic left in them; rows per day."""
    columns = ", ".join(f'"{c}"' for c in [*FLOW_COLUMNS, *PROVENANCE_SCHEMA])
    rows = {}
    con = duckdb.connect(hot_path, read_only=True)
    try:
        for day in days:
            path = cold.cold_file(day)
            cold.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
            start = datetime.fromisoformat(day).replace(tzinfo=UTC)
            rows[day] = con.execute(
                f"COPY (SELECT {columns} FROM flows WHERE ts >= $start AND ts < $end "
                f"ORDER BY ts, uid) TO '{path}' (FORMAT parquet, COMPRESSION zstd)",
                {"start": start, "end": start + timedelta(days=1)},
            ).fetchone()[0]
    finally:
        con.close()
    return rows
