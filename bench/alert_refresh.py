"""Cost of the evidence and alert refresh per 100,000 scored flows, beside the scoring pass
it follows (and of one pass of the day-level detectors, which run at most every 5 min), on an empty hot store and on one as full as a day of traffic leaves it.

Batches are the real IoT-23 flows (uids made unique), stamped as a live sensor at 1,000
flows/s sends them after the prefilled day, and scored by a small model trained here on
the same captures. Per batch, as a scoring pass does: upsert, score, refresh the model's
per-window counts (`alerts`), then refresh evidence and analysts' alerts of the windows
that changed and queue the new or changed alerts for delivery. The last line is

`alert_refresh: per_100k_flows evidence_and_alerts_s=<x> scoring_s=<y> ratio=<r>; hot_rows=<n>`

(the figures of the full store: medians of the batches after the first, scaled to 100k).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
from hot_costs import ALERT_MIN_SCORE, ALERT_WINDOW_MINUTES, LIVE_RATE, live_batches, small_scorer
from hot_prefill import prefill_hot

from nids_core.detection.delivery import queue_deliveries
from nids_core.detection.refresh import DAY_DETECTORS_EVERY, refresh_detections
from nids_core.detection.sensitivity import Thresholds
from nids_core.detection.triage import TriageStore
from nids_core.serving.alerts import refresh_alerts
from nids_core.serving.model_cache import ServedModel
from nids_core.serving.scoring import score_unscored
from nids_core.stores.hot import transaction, upsert_flows
from nids_core.stores.hot_schema import ensure_schema
from nids_core.training_data.data_dir import find_data_dir, iot23_files
from nids_core.zeek.files import read_zeek_file


def measure(path: Path, batches, scorer, triage: TriageStore) -> dict[str, list[float]]:
    costs: dict[str, list[float]] = {
        "scoring": [],
        "model_counts": [],
        "detections": [],
        "queue": [],
    }
    th = Thresholds.for_sensitivity("medium")
    evidence = alerts = 0
    for b in batches:
        con = duckdb.connect(str(path))
        try:
            ensure_schema(con)
            with transaction(con):
                upsert_flows(con, b)
            t0 = time.perf_counter()
            counts = score_unscored(con, ServedModel("bench", scorer, "bench"))
            t1 = time.perf_counter()
            refreshed = refresh_alerts(con, ALERT_MIN_SCORE, ALERT_WINDOW_MINUTES)
            t2 = time.perf_counter()
            found = refresh_detections(con, refreshed.window_starts, ALERT_WINDOW_MINUTES, th, [])
            t3 = time.perf_counter()
            queue_deliveries(con, triage, ["file"])
            t4 = time.perf_counter()
        finally:
            con.close()
        if counts.inserted != b.height:
            raise SystemExit(f"scored {counts.inserted} of a batch of {b.height}")
        evidence += sum(found.evidence.values())
        alerts = found.alerts
        for k, v in zip(costs, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            costs[k].append(v)
    print(f"    evidence rows written {evidence:,}; alerts in the last refresh {alerts}")
    return costs


def day_pass(path: Path) -> float:
    """Seconds of one refresh of the newest window that runs the day-level detectors too."""
    con = duckdb.connect(str(path))
    try:
        newest = con.execute(
            f"SELECT max(time_bucket(INTERVAL {ALERT_WINDOW_MINUTES} MINUTE, ts)) FROM flows"
        ).fetchone()[0]
        th = Thresholds.for_sensitivity("medium")
        t0 = time.perf_counter()
        refresh_detections(con, [newest], ALERT_WINDOW_MINUTES, th, [], day_every=timedelta(0))
        return time.perf_counter() - t0
    finally:
        con.close()


def per_100k(values: list[float], batch: int) -> float:
    return statistics.median(values[1:]) * 100_000 / batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hot-rows", type=int, default=2_000_000, help="flows of the prefilled day")
    ap.add_argument("--batch", type=int, default=20_000, help="flows per scoring pass")
    ap.add_argument("--batches", type=int, default=6)
    args = ap.parse_args()
    files = iot23_files(find_data_dir())
    if not files:
        sys.exit("no IoT-23 captures in the data directory (see `nids data download`)")
    import polars as pl

    flows = pl.concat([read_zeek_file(f).flows for f in files])
    scorer = small_scorer(flows)
    work = Path(tempfile.mkdtemp(prefix="nids-bench-alerts-"))
    try:
        live_start = datetime.now(UTC).replace(microsecond=0)
        t0 = time.perf_counter()
        prefill_hot(str(work / "full.duckdb"), flows, args.hot_rows, live_start)
        print(
            f"pre-filled a hot store with {args.hot_rows:,} flows in {time.perf_counter() - t0:.0f} s"
        )
        results = {}
        for label, path in (
            ("empty hot store", work / "empty.duckdb"),
            (f"{args.hot_rows:,} rows in the hot store", work / "full.duckdb"),
        ):
            batches = live_batches(flows, live_start, LIVE_RATE, args.batch, args.batches, "a")
            print(f"  {label}: {args.batches} batches of {args.batch:,} flows at {LIVE_RATE:,}/s")
            costs = measure(path, batches, scorer, TriageStore(work / f"{path.stem}.sqlite"))
            r = {k: per_100k(v, args.batch) for k, v in costs.items()}
            r["day_pass"] = day_pass(path)
            results[label] = r
            print(
                f"    per 100k flows: scoring {r['scoring']:.2f} s, model counts "
                f"{r['model_counts']:.2f} s, evidence and alerts {r['detections']:.2f} s, "
                f"queueing {r['queue']:.3f} s; a pass of the day-level detectors (beacons, "
                f"long connections; at most every {DAY_DETECTORS_EVERY.seconds // 60} min) "
                f"{r['day_pass']:.2f} s"
            )
        (empty, full) = results.values()
        x = full["detections"] + full["queue"]
        print(
            f"  full / empty: evidence and alerts {full['detections'] / empty['detections']:.2f}x, "
            f"scoring {full['scoring'] / empty['scoring']:.2f}x"
        )
        print(
            f"alert_refresh: per_100k_flows evidence_and_alerts_s={x:.2f} "
            f"scoring_s={full['scoring']:.2f} ratio={x / full['scoring']:.2f}; "
            f"hot_rows={args.hot_rows}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    main()
