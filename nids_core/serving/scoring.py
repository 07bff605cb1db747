"""Scoring the hot table: every flow without a prediction gets one, exactly once.

The graph for a flow is built over its time window (the model's graph window, aligned the
same way as in training) from all hot flows in that window, so it is scored with its recent
neighbours as context. Predictions are inserted, never updated: a flow keeps the
prediction of the model version that scored it.

A score that is not a number never becomes a verdict: such a flow gets no prediction (it
is counted as unscorable), and rows a model cannot read (a non-finite duration or a `ts`
beyond the plausible window, stored before the window was narrowed) are neither scored
nor used as context.

A run reads only what arrived since the last one, whatever the table holds: the flows
ingested after the `scoring_progress` mark (less SCORING_LOOKBACK, against clock steps),
checked against the predictions made since then, and as context only the rows of their
graph windows, which DuckDB finds through the `ts` zone maps. A run that scored all it
found moves the mark to the newest `ingested_at` it saw; a run cut short by `max_flows`
leaves it, so the next run starts where this one could not finish. A flow that got no
finite score is counted once, then left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import polars as pl

from nids_core.model.graph_window import GraphWindow, window_micros, window_number_sql
from nids_core.schema import FLOW_COLUMNS
from nids_core.serving.model_cache import ServedModel
from nids_core.stores.hot import TsRanges
from nids_core.zeek.plausibility import PlausibleTime

# Flows ingested this long before the mark are read again (and found scored): a clock
# stepped back by less than this loses no flow.
SCORING_LOOKBACK = timedelta(minutes=1)


@dataclass(frozen=True)
class ScoreCounts:
    unscored: int
    context_flows: int
    windows: int
    inserted: int
    predicted_attacks: int
    seconds: float
    unscorable: int = 0
    remaining: int = 0  # readable flows left for the next run (beyond max_flows)


def predictions_frame(
    uids: pl.Series, scores: np.ndarray, threshold: float, model_version: str
) -> pl.DataFrame:
    """uid, score, predicted_label ('malicious' at or above the threshold), model_version;
    flows whose score is not finite are left out (no verdict)."""
    frame = pl.DataFrame({"uid": uids, "score": np.asarray(scores, dtype=np.float64)})
    return frame.filter(pl.col("score").is_finite()).with_columns(
        pl.when(pl.col("score") >= threshold)
        .then(pl.lit("malicious"))
        .otherwise(pl.lit("benign"))
        .alias("predicted_label"),
        pl.lit(str(model_version)).alias("model_version"),
    )


def scorable_sql(alias: str = "f") -> str:
    """Rows a model can read: a finite (or unset) duration and a plausible ts ($latest)."""
    return f"({alias}.duration IS NULL OR isfinite({alias}.duration)) AND {alias}.ts <= $latest"


def scoring_mark(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """The newest `ingested_at` a finished scoring run has read up to (None: none yet)."""
    row = con.execute("SELECT max(scored_through) FROM scoring_progress").fetchone()
    return row[0] if row else None


def _set_scoring_mark(con: duckdb.DuckDBPyConnection, mark: datetime) -> None:
    con.execute("DELETE FROM scoring_progress")
    con.execute("INSERT INTO scoring_progress VALUES ($mark)", {"mark": mark})


def score_unscored(
    con: duckdb.DuckDBPyConnection,
    model: ServedModel,
    max_flows: int | None = None,
    latest: datetime | None = None,
) -> ScoreCounts:
    """Score flows that have no prediction (oldest first, at most `max_flows`) with `model`,
    each prediction carrying its version; flows with a `ts` after `latest` (default: a day
    from now) are not scored."""
    t0 = time.perf_counter()
    latest = latest or PlausibleTime().latest()
    window = window_number_sql(model.scorer.window, "f.ts")
    mark = scoring_mark(con)
    newest = _stage_pending(con, window, mark, latest)
    unscored, readable, unreadable = _pick_unscored(con, max_flows)
    remaining = readable - unscored
    if unscored == 0:
        if newest is not None and remaining == 0:
            _set_scoring_mark(con, newest)
        con.execute("DROP TABLE IF EXISTS _unscored")
        return ScoreCounts(0, 0, 0, 0, 0, time.perf_counter() - t0, unscorable=unreadable)
    context = _window_context(con, model.scorer.window, window, latest)
    windows = con.execute("SELECT count(DISTINCT bucket) FROM _unscored").fetchone()[0]
    # The window's other flows are context: only the flows being scored go through the
    # head and the trees.
    target = context["_target"].to_numpy()
    scores = model.scorer.score(context.drop("_target"), targets=np.flatnonzero(target))
    out = predictions_frame(
        context["uid"].filter(context["_target"]), scores, model.threshold, model.version
    ).unique("uid", keep="first", maintain_order=True)
    inserted = _insert_predictions(con, out, newest if remaining == 0 else None)
    return ScoreCounts(
        unscored,
        context.height,
        int(windows),
        inserted,
        int((out["predicted_label"] == "malicious").sum()),
        time.perf_counter() - t0,
        unscorable=unreadable + int(target.sum()) - out.height,
        remaining=remaining,
    )


def _stage_pending(
    con: duckdb.DuckDBPyConnection, window: str, mark: datetime | None, latest: datetime
) -> datetime | None:
    """Temp table `_pending`: the flows ingested since the mark, less those with a
    prediction (looked for among the predictions of the same ts ranges, since a prediction
    carries its flow's ts). Returns the newest `ingested_at` seen."""
    params: dict = {"latest": latest}
    since = "true"
    if mark is not None:
        since = "f.ingested_at > $since"
        # A mark ahead of the clock (which then stepped back) must not hide new flows.
        params["since"] = min(mark, datetime.now(UTC)) - SCORING_LOOKBACK
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _new AS "
        f"SELECT f.uid, f.ts, f.ingested_at, {window} AS bucket, {scorable_sql()} AS readable "
        f"FROM flows f WHERE {since}",
        params,
    )
    predicted, predicted_params = "predictions", {}
    if mark is not None:
        ranges = TsRanges.of(con.execute("SELECT ts FROM _new").pl()["ts"])
        in_ranges, predicted_params = ranges.sql("p.ts")
        predicted = f"(SELECT p.uid FROM predictions p WHERE {in_ranges})"
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _pending AS "
        f"SELECT n.* FROM _new n ANTI JOIN {predicted} q ON q.uid = n.uid",
        predicted_params,
    )
    newest = con.execute("SELECT max(ingested_at) FROM _new").fetchone()[0]
    con.execute("DROP TABLE _new")
    return newest


def _pick_unscored(con: duckdb.DuckDBPyConnection, max_flows: int | None) -> tuple[int, int, int]:
    """Temp table `_unscored`: the readable pending flows, one row per uid, oldest first,
    at most `max_flows`. Returns (picked, readable, unreadable) counts of `_pending`."""
    limit = f"LIMIT {int(max_flows)}" if max_flows else ""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _unscored AS SELECT uid, ts, bucket FROM _pending "
        "WHERE readable QUALIFY row_number() OVER (PARTITION BY uid ORDER BY ts) = 1 "
        f"ORDER BY ts, uid {limit}"
    )
    unscored = con.execute("SELECT count(*) FROM _unscored").fetchone()[0]
    readable, unreadable = con.execute(
        "SELECT count(*) FILTER (WHERE readable), count(*) FILTER (WHERE NOT readable) "
        "FROM _pending"
    ).fetchone()
    con.execute("DROP TABLE _pending")
    return int(unscored), int(readable), int(unreadable)


def _window_context(
    con: duckdb.DuckDBPyConnection, graph_window: GraphWindow, window: str, latest: datetime
) -> pl.DataFrame:
    """Every readable row of the graph windows being scored, with `_target` marking the
    flows to score: found through their ts range (which prunes the scan) and then their
    window number (which is exact)."""
    params: dict = {"latest": latest}
    in_windows = "true"
    micros = window_micros(graph_window)
    if micros:
        buckets = con.execute("SELECT DISTINCT bucket FROM _unscored").pl()["bucket"]
        starts = pl.from_epoch(buckets * micros, time_unit="us").dt.replace_time_zone("UTC")
        ranges = TsRanges.of_windows(starts, graph_window)
        in_windows, ts_params = ranges.sql("f.ts")
        params.update(ts_params)
    cols = ", ".join(f"f.{c}" for c in FLOW_COLUMNS)
    return con.execute(
        f"SELECT {cols}, (u.uid IS NOT NULL) AS _target FROM flows f "
        f"LEFT JOIN _unscored u ON u.uid = f.uid "
        f"WHERE {in_windows} AND {window} IN (SELECT DISTINCT bucket FROM _unscored) "
        f"AND {scorable_sql()} ORDER BY f.ts, f.uid",
        params,
    ).pl()


def _insert_predictions(
    con: duckdb.DuckDBPyConnection, out: pl.DataFrame, mark: datetime | None
) -> int:
    """Insert the predictions (with their flows' ts) and, when the run read all it found,
    move the scoring mark to `mark`. Returns the rows inserted."""
    con.register("_scored", out.to_arrow())
    try:
        inserted = con.execute(
            "INSERT INTO predictions "
            "(uid, score, predicted_label, model_version, predicted_at, ts) "
            "SELECT s.uid, s.score, s.predicted_label, s.model_version, now(), u.ts "
            "FROM _scored s JOIN _unscored u USING (uid) ORDER BY u.ts"
        ).fetchone()[0]
        if mark is not None:
            _set_scoring_mark(con, mark)
    finally:
        con.unregister("_scored")
        con.execute("DROP TABLE IF EXISTS _unscored")
    return int(inserted)
