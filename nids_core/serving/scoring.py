"""Scoring the hot table: every flow without a prediction gets one, exactly once.

The graph for a flow is built over its time window (the model's graph window, aligned the
same way as in training) from all hot flows in that window, so it is scored with its recent
neighbours as context. Predictions are inserted, never updated: a flow keeps the
prediction of the model version that scored it.

A score that is not a number never becomes a verdict: such a flow gets no prediction (it
is counted as unscorable), and rows a model cannot read (a non-finite duration or a `ts`
beyond the plausible window, stored before ingest quarantined them) are neither scored
nor used as context.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime

import duckdb
import numpy as np
import polars as pl

from nids_core.ingest.plausibility import PlausibleTime
from nids_core.model.gnn import FlowScorer
from nids_core.schema import FLOW_COLUMNS


@dataclass(frozen=True)
class ScoreCounts:
    unscored: int
    context_flows: int
    windows: int
    inserted: int
    predicted_attacks: int
    seconds: float
    unscorable: int = 0


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


def bucket_sql(window_us: int | None, column: str = "ts") -> str:
    """SQL for a flow's graph window number (aligned as in nids_core.model.flow_graph)."""
    return f"(epoch_us({column}) // {window_us})" if window_us else "0"


def scorable_sql(alias: str = "f") -> str:
    """Rows a model can read: a finite (or unset) duration and a plausible ts ($latest)."""
    return f"({alias}.duration IS NULL OR isfinite({alias}.duration)) AND {alias}.ts <= $latest"


def score_unscored(
    con: duckdb.DuckDBPyConnection,
    scorer: FlowScorer,
    model_version: str,
    max_flows: int | None = None,
    latest: datetime | None = None,
) -> ScoreCounts:
    """Score flows that have no prediction (oldest first, at most `max_flows`); flows with
    a `ts` after `latest` (default: a day from now) are not scored."""
    t0 = time.perf_counter()
    params = {"latest": latest or PlausibleTime().latest()}
    window_us = int(scorer.window.total_seconds() * 1_000_000) if scorer.window else None
    bucket = bucket_sql(window_us, "f.ts")
    limit = f"LIMIT {int(max_flows)}" if max_flows else ""
    # One pass over the flows without a prediction: the readable ones (oldest first, at
    # most `max_flows`) are scored, the others only counted.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _pending AS "
        f"SELECT f.uid, f.ts, {bucket} AS bucket, {scorable_sql()} AS readable FROM flows f "
        "ANTI JOIN predictions p ON p.uid = f.uid",
        params,
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _unscored AS SELECT uid, bucket FROM _pending "
        f"WHERE readable ORDER BY ts, uid {limit}"
    )
    unscored = con.execute("SELECT count(*) FROM _unscored").fetchone()[0]
    unreadable = con.execute("SELECT count(*) FROM _pending WHERE NOT readable").fetchone()[0]
    con.execute("DROP TABLE _pending")
    if unscored == 0:
        return ScoreCounts(0, 0, 0, 0, 0, time.perf_counter() - t0, unscorable=int(unreadable))
    cols = ", ".join(f"f.{c}" for c in FLOW_COLUMNS)
    context = con.execute(
        f"SELECT {cols}, (u.uid IS NOT NULL) AS _target FROM flows f "
        f"LEFT JOIN _unscored u ON u.uid = f.uid "
        f"WHERE {bucket} IN (SELECT DISTINCT bucket FROM _unscored) AND {scorable_sql()} "
        "ORDER BY f.ts, f.uid",
        params,
    ).pl()
    windows = con.execute("SELECT count(DISTINCT bucket) FROM _unscored").fetchone()[0]
    scores = scorer.score(context.drop("_target"))
    target = context["_target"].to_numpy()
    out = predictions_frame(
        context["uid"].filter(context["_target"]), scores[target], scorer.threshold, model_version
    )
    con.register("_scored", out.to_arrow())
    try:
        inserted = con.execute(
            "INSERT INTO predictions (uid, score, predicted_label, model_version, predicted_at) "
            "SELECT uid, score, predicted_label, model_version, now() FROM _scored "
            "ON CONFLICT (uid) DO NOTHING"
        ).fetchone()[0]
    finally:
        con.unregister("_scored")
        con.execute("DROP TABLE IF EXISTS _unscored")
    attacks = int((out["predicted_label"] == "malicious").sum())
    return ScoreCounts(
        unscored,
        context.height,
        int(windows),
        int(inserted),
        attacks,
        time.perf_counter() - t0,
        unscorable=int(unreadable) + int(target.sum()) - out.height,
    )
