"""Refresh evidence and alerts in the hot store for the alert windows that changed.

Per changed window: the model's evidence and the scans are rebuilt from the window's flows
(and their predictions). Per UTC day of a changed window: the beacons of the pairs seen in
those windows and the day's long connections are rebuilt. Then the alerts of every window
whose evidence may have changed are rebuilt from the evidence. All of it in one
transaction: a refresh killed half-way leaves the tables as they were, and a refresh run
twice writes the same rows (evidence and alert ids are derived from what they are about)."""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import duckdb
import polars as pl

from nids_core.detection.addresses import internal_mask
from nids_core.detection.alerts import ALERT_COLUMNS, alert_rows
from nids_core.detection.allow_list import AllowEntry, suppressed_by
from nids_core.detection.beacons import beacons
from nids_core.detection.evidence import EVIDENCE_COLUMNS, evidence_id
from nids_core.detection.long_connections import long_connections
from nids_core.detection.model_evidence import model_evidence
from nids_core.detection.scans import horizontal_scans, vertical_scans
from nids_core.detection.sensitivity import Thresholds
from nids_core.stores.hot import TsRanges, transaction

WINDOW_DETECTORS = ("model", "horizontal_scan", "vertical_scan")
DAY_DETECTORS = ("beacon", "long_connection")
_FLOW_COLUMNS = (
    "f.ts, f.uid, f.orig_h, f.resp_h, f.resp_p, f.proto, f.conn_state, f.duration, f.orig_bytes"
)


DAY_DETECTORS_EVERY = timedelta(minutes=5)


@dataclass(frozen=True)
class DetectionRefresh:
    windows: int = 0
    evidence: dict[str, int] = field(default_factory=dict)  # new rows per detector
    suppressed: int = 0
    alerts: int = 0  # rows rebuilt
    seconds: float = 0.0
    day_detectors: bool = False  # whether beacons and long connections ran


def _utc(frame: pl.DataFrame) -> pl.DataFrame:
    """DuckDB hands TIMESTAMPTZ over in its session zone's name (`Etc/UTC`): make it UTC."""
    return frame.with_columns(
        pl.col(c).dt.convert_time_zone("UTC")
        for c, t in frame.schema.items()
        if isinstance(t, pl.Datetime)
    )


def _register(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    con.register(name, frame.to_arrow())


def _window_flows(con, starts: pl.Series, width: timedelta) -> pl.DataFrame:
    ranges = TsRanges.of_windows(starts, width)
    f_in, f_params = ranges.sql("f.ts", "f_ts")
    p_in, p_params = ranges.sql("p.ts", "p_ts")
    minutes = int(width.total_seconds() // 60)
    _register(con, "_changed", pl.DataFrame({"window_start": starts}))
    return (
        con.execute(
            f"SELECT {_FLOW_COLUMNS}, p.score, p.predicted_label, p.model_version "
            f"FROM flows f LEFT JOIN predictions p ON p.uid = f.uid AND {p_in} "
            f"WHERE {f_in} AND time_bucket(INTERVAL {minutes} MINUTE, f.ts) IN "
            "(SELECT window_start FROM _changed)",
            {**f_params, **p_params},
        )
        .pl()
        .pipe(_utc)
    )


def _day_flows(con, day: datetime, pairs: pl.DataFrame, th: Thresholds) -> pl.DataFrame:
    """The day's flows of `pairs` (for beacons) and its long ones."""
    _register(con, "_pairs", pairs)
    return (
        con.execute(
            f"SELECT {_FLOW_COLUMNS} FROM flows f WHERE f.ts >= $lo AND f.ts < $hi AND ("
            "f.duration >= $long OR (f.orig_h, f.resp_h, f.resp_p) IN "
            "(SELECT (orig_h, resp_h, resp_p) FROM _pairs))",
            {"lo": day, "hi": day + timedelta(days=1), "long": th.long_connection_seconds},
        )
        .pl()
        .pipe(_utc)
    )


def _changed_windows(con, width: timedelta) -> pl.Series:
    minutes = int(width.total_seconds() // 60)
    return (
        con.execute(
            f"SELECT DISTINCT time_bucket(INTERVAL {minutes} MINUTE, ts) AS w FROM flows ORDER BY 1"
        )
        .pl()
        .pipe(_utc)["w"]
    )


def refresh_detections(
    con: duckdb.DuckDBPyConnection,
    window_starts: Sequence[datetime] | pl.Series | None,
    window_minutes: int,
    th: Thresholds,
    allow: list[AllowEntry],
    now: datetime | None = None,
    day_every: timedelta = DAY_DETECTORS_EVERY,
) -> DetectionRefresh:
    """Rebuild evidence and alerts of the alert windows at `window_starts` (None: every
    window that still has hot flows, and the day-level detectors whatever `day_every`).
    The day-level detectors run when they last ran `day_every` ago or more."""
    t0 = time.perf_counter()
    now = now or datetime.now(UTC)
    width = timedelta(minutes=window_minutes)
    starts = _windows_to_refresh(con, window_starts, width)
    if starts.is_empty():
        return DetectionRefresh()
    days = _days_to_refresh(con, starts, window_starts is None, now, day_every)
    flows = _window_flows(con, starts, width)
    day_evidence, replaced_ids = _day_evidence(con, flows, days, th)
    new = pl.concat(
        [
            model_evidence(flows, window_minutes, th),
            horizontal_scans(flows, th),
            vertical_scans(flows, th),
            *day_evidence,
        ]
    )
    new = new.with_columns(suppressed_by(new, allow, now), refreshed_at=pl.lit(now))
    alert_windows = pl.concat([starts, days.dt.truncate(f"{window_minutes}m")]).unique()
    try:
        with transaction(con):
            if days.len():
                con.execute("DELETE FROM detection_progress")
                con.execute("INSERT INTO detection_progress VALUES ($now)", {"now": now})
            _replace_evidence(con, new, starts, days, replaced_ids, window_minutes)
            alerts = _rebuild_alerts(con, alert_windows, window_minutes, th, now)
    finally:
        _unregister(con)
    counts = Counter(new.filter(pl.col("suppressed_by").is_null())["detector"].to_list())
    return DetectionRefresh(
        windows=starts.len(),
        evidence=dict(counts),
        suppressed=int(new["suppressed_by"].is_not_null().sum()),
        alerts=alerts.height,
        seconds=time.perf_counter() - t0,
        day_detectors=bool(days.len()),
    )


def _windows_to_refresh(
    con: duckdb.DuckDBPyConnection,
    window_starts: Sequence[datetime] | pl.Series | None,
    width: timedelta,
) -> pl.Series:
    """The alert windows to rebuild, oldest first (None: every window with hot flows)."""
    if window_starts is None:
        starts = _changed_windows(con, width)
    else:
        starts = pl.Series("window_start", list(window_starts), dtype=pl.Datetime("us", "UTC"))
    return starts.unique().sort().alias("window_start")


def _days_to_refresh(
    con: duckdb.DuckDBPyConnection,
    starts: pl.Series,
    everything: bool,
    now: datetime,
    day_every: timedelta,
) -> pl.Series:
    """The UTC days of the windows, for the day-level detectors, when they are due (or
    when everything is rebuilt); none otherwise."""
    last_day_run = con.execute("SELECT max(day_detectors_at) FROM detection_progress").fetchone()[0]
    days = starts.dt.truncate("1d").unique().sort()
    if everything or last_day_run is None or now - last_day_run >= day_every:
        return days
    return days.clear()


def _day_evidence(
    con: duckdb.DuckDBPyConnection, flows: pl.DataFrame, days: pl.Series, th: Thresholds
) -> tuple[list[pl.DataFrame], list[str]]:
    """Beacons and long connections over each day of the outward pairs seen in `flows`,
    and the ids of the beacon evidence they replace (a pair's beacon is one per day)."""
    evidence, replaced_ids = [], []
    outward = flows.filter(internal_mask(flows["orig_h"]) & ~internal_mask(flows["resp_h"]))
    for day in days:
        of_day = outward.filter(pl.col("ts").dt.truncate("1d") == day)
        pairs = of_day.select("orig_h", "resp_h", "resp_p", "proto").unique()
        keys = pairs.select("orig_h", "resp_h", "resp_p")
        day_flows = _day_flows(con, day, keys, th)
        found = beacons(day_flows.join(keys, on=["orig_h", "resp_h", "resp_p"], how="semi"), th)
        evidence += [found, long_connections(day_flows, th)]
        replaced_ids += [
            evidence_id("beacon", h, day, f"{r}|{p}|{proto}")
            for h, r, p, proto in pairs.iter_rows()
        ]
    return evidence, replaced_ids


def _replace_evidence(
    con: duckdb.DuckDBPyConnection,
    new: pl.DataFrame,
    starts: pl.Series,
    days: pl.Series,
    replaced_ids: list[str],
    window_minutes: int,
) -> None:
    """Delete the evidence the refresh rebuilt (its windows' window detectors, its days'
    long connections, the beacons it replaces) and insert the new evidence."""
    _register(con, "_changed", pl.DataFrame({"window_start": starts}))
    _register(con, "_days", pl.DataFrame({"day": days}))
    _register(
        con,
        "_replaced",
        pl.DataFrame({"evidence_id": replaced_ids}, schema={"evidence_id": pl.String()}),
    )
    con.execute(
        f"DELETE FROM evidence WHERE list_contains({list(WINDOW_DETECTORS)}, detector) "
        f"AND time_bucket(INTERVAL {window_minutes} MINUTE, window_start) IN "
        "(SELECT window_start FROM _changed)"
    )
    con.execute(
        "DELETE FROM evidence WHERE (detector = 'long_connection' AND window_start IN "
        "(SELECT day FROM _days)) OR evidence_id IN (SELECT evidence_id FROM _replaced)"
    )
    _register(con, "_new_evidence", new)
    con.execute(
        f"INSERT INTO evidence BY NAME SELECT {', '.join(EVIDENCE_COLUMNS)}, suppressed_by, "
        "refreshed_at FROM _new_evidence"
    )


def _rebuild_alerts(
    con: duckdb.DuckDBPyConnection,
    alert_windows: pl.Series,
    window_minutes: int,
    th: Thresholds,
    now: datetime,
) -> pl.DataFrame:
    """The alerts of `alert_windows`, summed again from all their evidence."""
    _register(con, "_alert_windows", pl.DataFrame({"window_start": alert_windows}))
    evidence = (
        con.execute(
            f"SELECT * FROM evidence WHERE time_bucket(INTERVAL {window_minutes} MINUTE, "
            "window_start) IN (SELECT window_start FROM _alert_windows)"
        )
        .pl()
        .pipe(_utc)
    )
    alerts = alert_rows(evidence, window_minutes, th.alert_min_score)
    con.execute(
        "DELETE FROM analyst_alerts WHERE window_start IN (SELECT window_start FROM _alert_windows)"
    )
    if not alerts.is_empty():
        _register(con, "_new_alerts", alerts.with_columns(refreshed_at=pl.lit(now)))
        con.execute(
            f"INSERT INTO analyst_alerts BY NAME SELECT {', '.join(ALERT_COLUMNS)}, "
            "refreshed_at FROM _new_alerts"
        )
    return alerts


_REGISTERED = ("_changed", "_days", "_replaced", "_new_evidence", "_alert_windows", "_new_alerts")


def _unregister(con: duckdb.DuckDBPyConnection) -> None:
    for name in (*_REGISTERED, "_pairs"):
        with contextlib.suppress(duckdb.Error, KeyError):
            con.unregister(name)
