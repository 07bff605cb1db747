"""Per-batch costs of the hot store's three writers (the ingest upsert, scoring and the
alerts refresh) on a store as full as a day of traffic leaves it, beside the same batches
on an empty store: `bench/ingest.py --hot-rows N` prints both.

Batches are the real IoT-23 flows, uids made unique, stamped as a live sensor at
`rate` flows/s sends them (the next minutes after the prefilled day); scored by a small
model trained here on the same captures (the model's size does not change what is read).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from nids_core.ingest.landing import upsert_batch
from nids_core.model.splits import time_split
from nids_core.model.training import TrainConfig, train_served
from nids_core.serving.alerts import refresh_alerts
from nids_core.serving.model_cache import ServedModel
from nids_core.serving.scoring import score_unscored
from nids_core.stores.cold import QUARANTINE_SCHEMA
from nids_core.stores.hot_backend import HotBackend, as_backend

ALERT_MIN_SCORE = 0.5
LIVE_RATE = 1_000  # flows/s of the sensor the batches come from
ALERT_WINDOW_MINUTES = 15


@dataclass
class BatchCosts:
    upsert_s: list[float]
    scoring_s: list[float]
    alerts_s: list[float]

    def medians(self) -> tuple[float, float, float]:
        """Median of each cost, leaving out the first batch (which pays for its store's
        first scoring and alerts marks)."""
        return tuple(
            statistics.median(v[1:]) for v in (self.upsert_s, self.scoring_s, self.alerts_s)
        )


def small_scorer(flows: pl.DataFrame):
    split = time_split(flows.filter(pl.col("label").is_not_null()))
    config = TrainConfig(max_epochs=5, patience=2, hidden=32)
    return train_served(
        split.filter(pl.col("split") == "train"),
        split.filter(pl.col("split") == "validation"),
        config,
    ).scorer


def live_batches(
    flows: pl.DataFrame, start: datetime, rate: int, batch: int, count: int, tag: str
) -> list[pl.DataFrame]:
    """`count` batches of `batch` flows stamped at `rate`/s from `start`, with provenance."""
    out = []
    step = timedelta(seconds=1 / rate)
    for k in range(count):
        rows = pl.concat([flows] * -(-batch // flows.height)).head(batch)
        first = k * batch
        out.append(
            rows.with_columns(
                (pl.col("uid") + f"-{tag}{k}-" + pl.int_range(pl.len()).cast(pl.Utf8)).alias("uid"),
                (pl.lit(start) + step * (pl.int_range(pl.len()) + first)).alias("ts"),
                pl.lit("zeek.conn").alias("topic"),
                pl.lit(0, dtype=pl.Int32).alias("partition"),
                (pl.int_range(pl.len(), dtype=pl.Int64) + first).alias("offset"),
            )
        )
    return out


def measure(hot: HotBackend | Path, batches: list[pl.DataFrame], scorer) -> BatchCosts:
    """Upsert (as an ingest run does, key locks and retries included), score and refresh
    alerts batch after batch, each on a fresh connection (as each run opens its own)."""
    hot = as_backend(hot)
    costs = BatchCosts([], [], [])
    rejects = pl.DataFrame(schema=QUARANTINE_SCHEMA)
    for b in batches:
        with hot.connect() as con:
            t0 = time.perf_counter()
            upsert_batch(con, hot, b, rejects)
            t1 = time.perf_counter()
            counts = score_unscored(con, ServedModel("bench", scorer, "bench"))
            t2 = time.perf_counter()
            refresh_alerts(con, ALERT_MIN_SCORE, ALERT_WINDOW_MINUTES)
            t3 = time.perf_counter()
        if counts.inserted != b.height:
            raise SystemExit(f"scored {counts.inserted} of a batch of {b.height}")
        costs.upsert_s.append(t1 - t0)
        costs.scoring_s.append(t2 - t1)
        costs.alerts_s.append(t3 - t2)
    return costs
