"""Scoring the hot table: every flow without a prediction gets one, exactly once.

The graph for a flow is built over its time window (the model's graph window, aligned the
same way as in training) from all hot flows in that window, so it is scored with its recent
neighbours as context. Predictions are inserted, never updated: a flow keeps the
prediction of the model version that scored it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from nids_core.gnn import FlowScorer
from nids_core.schema import FLOW_COLUMNS


@dataclass(frozen=True)
class ScoreCounts:
    unscored: int
    context_flows: int
    windows: int
    inserted: int
    predicted_attacks: int
    seconds: float


def predictions_frame(
    uids: pl.Series, scores: np.ndarray, threshold: float, model_version: str
) -> pl.DataFrame:
    """uid, score, predicted_label ('malicious' at or above the threshold), model_version."""
    return pl.DataFrame({"uid": uids, "score": np.asarray(scores, dtype=np.float64)}).with_columns(
        pl.when(pl.col("score") >= threshold)
        .then(pl.lit("malicious"))
        .otherwise(pl.lit("benign"))
        .alias("predicted_label"),
        pl.lit(str(model_version)).alias("model_version"),
    )


def bucket_sql(window_us: int | None, column: str = "ts") -> str:
    """SQL for a flow's graph window number (aligned as in nids_core.flow_graph)."""
    return f"(epoch_us({column}) // {window_us})" if window_us else "0"


def score_unscored(
    con: duckdb.DuckDBPyConnection,
    scorer: FlowScorer,
    model_version: str,
    max_flows: int | None = None,
) -> ScoreCounts:
    """Score flows that have no prediction (oldest first, at most `max_flows`)."""
    t0 = time.perf_counter()
    window_us = int(scorer.window.total_seconds() * 1_000_000) if scorer.window else None
    bucket = bucket_sql(window_us, "f.ts")
    limit = f"LIMIT {int(max_flows)}" if max_flows else ""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _unscored AS "
        f"SELECT f.uid, {bucket} AS bucket FROM flows f "
        f"ANTI JOIN predictions p ON p.uid = f.uid ORDER BY f.ts, f.uid {limit}"
    )
    unscored = con.execute("SELECT count(*) FROM _unscored").fetchone()[0]
    if unscored == 0:
        return ScoreCounts(0, 0, 0, 0, 0, time.perf_counter() - t0)
    cols = ", ".join(f"f.{c}" for c in FLOW_COLUMNS)
    context = con.execute(
        f"SELECT {cols}, (u.uid IS NOT NULL) AS _target FROM flows f "
        f"LEFT JOIN _unscored u ON u.uid = f.uid "
        f"WHERE {bucket} IN (SELECT DISTINCT bucket FROM _unscored) "
        "ORDER BY f.ts, f.uid"
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
        unscored, context.height, int(windows), int(inserted), attacks, time.perf_counter() - t0
    )
