"""Alerts: flows predicted as attacks above a score, grouped by source host and window."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb

from nids_core.ingest.plausibility import PlausibleTime
from nids_core.stores.hot import transaction

ALERTS_DDL = """
CREATE TABLE IF NOT EXISTS alerts (
    window_start TIMESTAMPTZ NOT NULL,
    window_end TIMESTAMPTZ NOT NULL,
    orig_h VARCHAR NOT NULL,
    attack_flows BIGINT NOT NULL,
    flows BIGINT NOT NULL,
    max_score DOUBLE NOT NULL,
    mean_score DOUBLE NOT NULL,
    distinct_peers BIGINT NOT NULL,
    distinct_peer_ports BIGINT NOT NULL,
    first_seen TIMESTAMPTZ NOT NULL,
    last_seen TIMESTAMPTZ NOT NULL,
    model_versions VARCHAR NOT NULL,
    refreshed_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (window_start, orig_h)
)
"""


@dataclass(frozen=True)
class AlertRefresh:
    windows: int
    alerts: int
    hosts: int


def refresh_alerts(
    con: duckdb.DuckDBPyConnection,
    min_score: float,
    window_minutes: int,
    latest: datetime | None = None,
) -> AlertRefresh:
    """Rebuild alert rows for every window that still has hot flows, in one transaction
    (older alerts, whose flows have left the hot table, are kept as they were). Flows with
    a `ts` after `latest` (beyond the plausible window) make no alert window."""
    width = f"INTERVAL {int(window_minutes)} MINUTE"
    latest = latest or PlausibleTime().latest()
    with transaction(con):
        con.execute(
            f"DELETE FROM alerts WHERE window_start >= "
            f"(SELECT time_bucket({width}, min(ts)) FROM flows)"
        )
        con.execute("DELETE FROM alerts WHERE window_start > $latest", {"latest": latest})
        con.execute(
            f"""
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
            WHERE f.ts <= $latest
            GROUP BY 1, 2, 3
            HAVING count(*) FILTER (WHERE p.score >= $min) > 0
            """,
            {"min": min_score, "latest": latest},
        )
    alerts, hosts, windows = con.execute(
        "SELECT count(*), count(DISTINCT orig_h), count(DISTINCT window_start) FROM alerts"
    ).fetchone()
    return AlertRefresh(int(windows), int(alerts), int(hosts))


def latest_attack_rate(
    con: duckdb.DuckDBPyConnection,
    min_score: float,
    window_minutes: int,
    latest: datetime | None = None,
) -> tuple[str | None, int, int]:
    """(window start, scored flows, flows at or above `min_score`) of the newest window
    that has predictions, among flows no later than `latest` (the plausible window: one
    far-future flow must not stand for "the newest window" for good)."""
    width = f"INTERVAL {int(window_minutes)} MINUTE"
    row = con.execute(
        f"""
        SELECT time_bucket({width}, f.ts) AS w, count(*), count(*) FILTER (WHERE p.score >= ?)
        FROM flows f JOIN predictions p USING (uid)
        WHERE f.ts <= ?
        GROUP BY 1 ORDER BY 1 DESC LIMIT 1
        """,
        [min_score, latest or PlausibleTime().latest()],
    ).fetchone()
    if row is None:
        return None, 0, 0
    return str(row[0]), int(row[1]), int(row[2])


def top_alert_hosts(con: duckdb.DuckDBPyConnection, limit: int = 5) -> list[tuple]:
    return con.execute(
        "SELECT orig_h, sum(attack_flows) AS attacks, count(*) AS windows, max(max_score) "
        "FROM alerts GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT ?",
        [limit],
    ).fetchall()
