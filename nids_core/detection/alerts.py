"""Alerts: the unsuppressed evidence of one host in one alert window, summed.

The score is the noisy-or of each evidence's threat level x confidence (1 - prod(1 - t*c)),
so two independent detections count more than either and no sum exceeds 1; the severity is
the score on 0..100, with OCSF's `severity_id` tiers. The id is derived from the host and
window alone, so new evidence in the window updates the alert instead of making another;
`digest` changes whenever what the alert says changes (a redelivery as an update)."""

from __future__ import annotations

from datetime import datetime

import polars as pl

from nids_core.checksum import sha256_hex

ALERT_COLUMNS = (
    "alert_id",
    "host",
    "window_start",
    "window_end",
    "score",
    "severity",
    "detectors",
    "evidence_ids",
    "suppressed_evidence",
    "flows",
    "first_seen",
    "last_seen",
    "title",
    "digest",
)
# OCSF severity_id: 1 Informational, 2 Low, 3 Medium, 4 High, 5 Critical.
SEVERITY_TIERS = ((80, 5, "Critical"), (60, 4, "High"), (40, 3, "Medium"), (20, 2, "Low"))
HIGH_SEVERITY = 60


def severity_id(severity: int) -> tuple[int, str]:
    for low, sid, name in SEVERITY_TIERS:
        if severity >= low:
            return sid, name
    return 1, "Informational"


def alert_id(host: str, window_start: datetime) -> str:
    return sha256_hex(f"alert|{host}|{window_start.isoformat()}", 20)


def alert_rows(evidence: pl.DataFrame, window_minutes: int, min_score: float) -> pl.DataFrame:
    """One row per (host, alert window) whose unsuppressed evidence scores at least
    `min_score`; evidence belongs to the alert window its own window starts in."""
    if evidence.is_empty():
        return pl.DataFrame(schema={c: pl.String() for c in ALERT_COLUMNS}).clear()
    e = evidence.with_columns(
        alert_window=pl.col("window_start").dt.truncate(f"{window_minutes}m"),
        weight=pl.col("threat_level") * pl.col("confidence"),
        live=pl.col("suppressed_by").is_null(),
    )
    live = pl.col("live")
    grouped = (
        e.group_by("host", "alert_window")
        .agg(
            score=1 - (1 - pl.col("weight").filter(live)).product(),
            detectors=pl.col("detector").filter(live).unique().sort(),
            evidence_ids=pl.col("evidence_id").filter(live).sort(),
            suppressed_evidence=(~live).sum(),
            flows=pl.col("flows").filter(live).sum(),
            first_seen=pl.col("first_seen").filter(live).min(),
            last_seen=pl.col("last_seen").filter(live).max(),
            window_end=pl.col("window_end").filter(live).max(),
            lead=pl.col("description")
            .sort_by("weight", "evidence_id")
            .filter(live.sort_by("weight", "evidence_id"))
            .last(),
            parts=pl.format(
                "{}:{}:{}",
                pl.col("evidence_id"),
                pl.col("weight").round(4),
                pl.col("flows"),
            )
            .filter(live)
            .sort(),
        )
        .filter(pl.col("evidence_ids").list.len() > 0, pl.col("score") >= min_score)
    )
    rows = []
    for g in grouped.iter_rows(named=True):
        severity = round(100 * g["score"])
        detectors = g["detectors"]
        rows.append(
            {
                "alert_id": alert_id(g["host"], g["alert_window"]),
                "host": g["host"],
                "window_start": g["alert_window"],
                "window_end": max(g["window_end"], g["alert_window"]),
                "score": round(g["score"], 4),
                "severity": severity,
                "detectors": detectors,
                "evidence_ids": g["evidence_ids"],
                "suppressed_evidence": int(g["suppressed_evidence"]),
                "flows": int(g["flows"]),
                "first_seen": g["first_seen"],
                "last_seen": g["last_seen"],
                "title": f"{severity_id(severity)[1]}: {g['host']} "
                f"({' + '.join(detectors)}): {g['lead']}",
                "digest": sha256_hex("|".join([str(severity), *g["parts"]]), 24),
            }
        )
    return pl.DataFrame(rows).select(ALERT_COLUMNS) if rows else pl.DataFrame()
