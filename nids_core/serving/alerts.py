"""Alerts: flows predicted as attacks above a score, grouped by source host and window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import duckdb

from nids_core.stores.hot import TsRanges, transaction
from nids_core.zeek.plausibility import PlausibleTime

# Predictions made this long before the mark are read again: a clock stepped back by less
# than this loses no window.
ALERTS_LOOKBACK = timedelta(minutes=1)


@dataclass(frozen=True)
class AlertRefresh:
    windows: int
    alerts: int
    hosts: int
    refreshed_windows: int = 0
    # The windows rebuilt (None: every window with hot flows, on a first refresh).
    window_starts: list[datetime] | None = None


def _alert_rows_sql(width: str, where: str) -> str:
    return f"""
        INSERT INTO alerts
        SELECT time_bucket({width}, f.ts) AS window_start,
               time_bucket({width}, f.ts) + {width} AS window_end,
               f.orig_h,
               count(*) FILTER (WHERE p.score >= $min) AS attack_flows,
               count(*) AS flows,
               max(p.score) AS max_score,
               avg(p.score) FILTER (WHERE p.score >= $min) AS mean_score,
               count(DISTINCT f.resp_h) FILTER (WHERE p.score >= $min) AS distinct_peers,
               count(DISTINCT f.resp_p) FILTER (WHERE p.score >= $min) AS distinct_peer_ports,
               min(f.ts) FILTER (WHERE p.score >= $min) AS first_seen,
               max(f.ts) FILTER (WHERE p.score >= $min) AS last_seen,
               string_agg(DISTINCT p.model_version, ',' ORDER BY p.model_version)
                   AS model_versions,
               now() AS refreshed_at
        FROM flows f JOIN predictions p USING (uid)
        WHERE f.ts <= $latest AND {where}
        GROUP BY 1, 2, 3
        HAVING count(*) FILTER (WHERE p.score >= $min) > 0
    """


def _progress(con: duckdb.DuckDBPyConnection) -> tuple[datetime | None, datetime | None]:
    row = con.execute(
        "SELECT max(refreshed_through), max(newest_ts) FROM alerts_progress"
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def refresh_alerts(
    con: duckdb.DuckDBPyConnection,
    min_score: float,
    window_minutes: int,
    latest: datetime | None = None,
) -> AlertRefresh:
    """Rebuild the alert rows of the windows that got predictions since the last refresh,
    in one transaction: the windows of the predictions made since then, found through the
    `predicted_at` and `ts` zone maps, so a refresh costs what arrived, not what the hot
    table holds. The first refresh (no mark yet) rebuilds every window that still has hot
    flows. Older alerts, whose flows have left the hot table, are kept as they were. Flows
    with a `ts` after `latest` (beyond the plausible window) make no alert window."""
    width = f"INTERVAL {int(window_minutes)} MINUTE"
    latest = latest or PlausibleTime().latest()
    mark, newest_ts = _progress(con)
    params = {"min": min_score, "latest": latest}
    with transaction(con):
        if mark is None:
            through, newest_new = con.execute(
                "SELECT max(predicted_at), max(ts) FILTER (WHERE ts <= $latest) FROM predictions",
                {"latest": latest},
            ).fetchone()
            con.execute(
                f"DELETE FROM alerts WHERE window_start >= "
                f"(SELECT time_bucket({width}, min(ts)) FROM flows)"
            )
            where, refreshed, starts = "true", None, None
        else:
            # A mark ahead of the clock (which then stepped back) must not hide new rows.
            since = {"since": min(mark, datetime.now(UTC)) - ALERTS_LOOKBACK, "latest": latest}
            con.execute(
                "CREATE OR REPLACE TEMP TABLE _windows AS "
                f"SELECT DISTINCT time_bucket({width}, ts) AS window_start FROM predictions "
                "WHERE predicted_at > $since AND ts <= $latest",
                since,
            )
            through, newest_new = con.execute(
                "SELECT max(predicted_at), max(ts) FILTER (WHERE ts <= $latest) "
                "FROM predictions WHERE predicted_at > $since",
                since,
            ).fetchone()
            starts = con.execute("SELECT window_start FROM _windows").pl()["window_start"]
            refreshed = starts.len()
            ranges = TsRanges.of_windows(starts, timedelta(minutes=window_minutes))
            f_in, f_params = ranges.sql("f.ts", "f_ts")
            p_in, p_params = ranges.sql("p.ts", "p_ts")
            params.update(f_params)
            params.update(p_params)
            con.execute(
                "DELETE FROM alerts WHERE window_start IN (SELECT window_start FROM _windows)"
            )
            where = (
                f"{f_in} AND {p_in} AND time_bucket({width}, f.ts) IN "
                "(SELECT window_start FROM _windows)"
            )
        con.execute("DELETE FROM alerts WHERE window_start > $latest", {"latest": latest})
        if refreshed != 0:
            con.execute(_alert_rows_sql(width, where), params)
        con.execute("DROP TABLE IF EXISTS _windows")
        if through is not None:
            newest = max((t for t in (newest_ts, newest_new) if t is not None), default=None)
            con.execute("DELETE FROM alerts_progress")
            con.execute(
                "INSERT INTO alerts_progress VALUES ($through, $newest)",
                {"through": through, "newest": newest},
            )
    alerts, hosts, windows = con.execute(
        "SELECT count(*), count(DISTINCT orig_h), count(DISTINCT window_start) FROM alerts"
    ).fetchone()
    if refreshed is None:
        refreshed = int(windows)
    started = None if starts is None else starts.to_list()
    return AlertRefresh(int(windows), int(alerts), int(hosts), refreshed, started)


def latest_attack_rate(
    con: duckdb.DuckDBPyConnection,
    min_score: float,
    window_minutes: int,
    latest: datetime | None = None,
    min_flows: int = 1,
    max_span: timedelta = timedelta(hours=24),
) -> tuple[str | None, int, int]:
    """(span start, scored flows, flows at or above `min_score`) of the newest span of
    whole windows that holds at least `min_flows` scored flows: the newest window that has
    predictions, widened backwards (1, 4, 16, ... windows, at most `max_span`) while it holds
    fewer, so that a sparse newest window (17 flows after a busy hour) does not decide the
    attack rate alone. Only flows no later than `latest` (the plausible window) count: one
    far-future flow must not stand for "the newest window" for good. The newest window is
    the one the last alerts refresh recorded; spans are counted through the `ts` zone maps."""
    latest = latest or PlausibleTime().latest()
    _, newest = _progress(con)
    if newest is None or newest > latest:
        newest = con.execute(
            "SELECT max(ts) FROM predictions WHERE ts <= $latest", {"latest": latest}
        ).fetchone()[0]
    if newest is None:
        return None, 0, 0
    width = timedelta(minutes=window_minutes)
    start = con.execute(
        f"SELECT time_bucket(INTERVAL {int(window_minutes)} MINUTE, $ts)", {"ts": newest}
    ).fetchone()[0]
    most = max(1, int(max_span / width))
    windows = 1
    while True:
        low = start - (windows - 1) * width
        row = con.execute(
            """
            SELECT count(*), count(*) FILTER (WHERE p.score >= $min)
            FROM flows f JOIN predictions p USING (uid)
            WHERE f.ts >= $start AND f.ts < $end AND p.ts >= $start AND p.ts < $end
              AND f.ts <= $latest
            """,
            {"min": min_score, "start": low, "end": start + width, "latest": latest},
        ).fetchone()
        if row[0] >= min_flows or windows >= most:
            return str(low), int(row[0]), int(row[1])
        windows = min(most, windows * 4)


def top_alert_hosts(con: duckdb.DuckDBPyConnection, limit: int = 5) -> list[tuple]:
    return con.execute(
        "SELECT orig_h, sum(attack_flows) AS attacks, count(*) AS windows, max(max_score) "
        "FROM alerts GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
        [limit],
    ).fetchall()
