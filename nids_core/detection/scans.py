"""Horizontal and vertical port scans, as Zeek's scan.zeek finds them: failed connection
attempts from one host to many hosts on one port (horizontal) or to many ports of one host
(vertical) within a few minutes. Only failed attempts count, so a desktop that opens 40
web sites in five minutes is not a scanner."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from nids_core.detection.evidence import evidence_frame, why_json
from nids_core.detection.sensitivity import Thresholds

# Zeek conn_state values of an attempt that got no established connection.
FAILED_STATES: tuple[str, ...] = ("S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR", "OTH")
SCAN_THREAT = 0.6
TOP = 20


def _windowed(flows: pl.DataFrame, th: Thresholds) -> pl.DataFrame:
    return flows.with_columns(
        window_start=pl.col("ts").dt.truncate(f"{th.scan_window_minutes}m"),
        failed=pl.col("conn_state").is_in(FAILED_STATES),
    )


def _scan_evidence(
    flows: pl.DataFrame, th: Thresholds, key: list[str], counted: str, need: int, detector: str
) -> pl.DataFrame:
    if flows.is_empty():
        return evidence_frame([])
    w = _windowed(flows, th)
    groups = (
        w.group_by([*key, "window_start"])
        .agg(
            attempts=pl.len(),
            failed_attempts=pl.col("failed").sum(),
            distinct=pl.col(counted).filter(pl.col("failed")).n_unique(),
            targets=pl.col(counted).filter(pl.col("failed")).value_counts(sort=True).head(TOP),
            uids=pl.col("uid").filter(pl.col("failed")),
            first=pl.col("ts").filter(pl.col("failed")).min(),
            last=pl.col("ts").filter(pl.col("failed")).max(),
            states=pl.col("conn_state").filter(pl.col("failed")).value_counts(sort=True),
        )
        .filter(pl.col("distinct") >= need)
    )
    width = f"{th.scan_window_minutes} min"
    rows = []
    for g in groups.iter_rows(named=True):
        targets = [t[counted] for t in g["targets"]]
        share = g["failed_attempts"] / g["attempts"]
        if detector == "horizontal_scan":
            peers, ports = targets, [g["resp_p"]]
            what = f"{g['distinct']} hosts on port {g['resp_p']}/{g['proto']}"
        else:
            peers, ports = [g["resp_h"]], targets
            what = f"{g['distinct']} ports of {g['resp_h']}"
        rows.append(
            {
                "detector": detector,
                "host": g["orig_h"],
                "peers": [str(p) for p in peers],
                "ports": [int(p) for p in ports],
                "window_start": g["window_start"],
                "window_end": g["window_start"] + timedelta(minutes=th.scan_window_minutes),
                "first_seen": g["first"],
                "last_seen": g["last"],
                "flows": int(g["failed_attempts"]),
                "uids": g["uids"],
                "threat_level": SCAN_THREAT,
                # At the threshold 0.5, sure at twice it.
                "confidence": min(1.0, g["distinct"] / (2 * need)),
                "description": f"{g['orig_h']} tried {what} in {width} "
                f"({g['failed_attempts']} failed attempts)",
                "why": why_json(
                    {
                        "distinct": g["distinct"],
                        "threshold": need,
                        "window_minutes": th.scan_window_minutes,
                        "failed_attempts": g["failed_attempts"],
                        "attempts": g["attempts"],
                        "failed_share": round(share, 4),
                        "conn_states": {s["conn_state"]: s["count"] for s in g["states"]},
                        "top_targets": [[t[counted], t["count"]] for t in g["targets"]],
                    }
                ),
                "key": "|".join(str(g[k]) for k in key[1:]),
            }
        )
    return evidence_frame(rows)


def horizontal_scans(flows: pl.DataFrame, th: Thresholds) -> pl.DataFrame:
    """Evidence per (host, port, window) with failed attempts to at least
    `horizontal_scan_hosts` distinct hosts on that port."""
    return _scan_evidence(
        flows,
        th,
        ["orig_h", "resp_p", "proto"],
        "resp_h",
        th.horizontal_scan_hosts,
        "horizontal_scan",
    )


def vertical_scans(flows: pl.DataFrame, th: Thresholds) -> pl.DataFrame:
    """Evidence per (host, target host, window) with failed attempts to at least
    `vertical_scan_ports` distinct ports of that target."""
    return _scan_evidence(
        flows, th, ["orig_h", "resp_h"], "resp_p", th.vertical_scan_ports, "vertical_scan"
    )
