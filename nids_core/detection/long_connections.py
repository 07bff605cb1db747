"""Long connections, RITA-style: a connection that stays open for an hour or more (a
tunnel, a reverse shell, a remote-access trojan), per (host, peer, port, UTC day)."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from nids_core.detection.addresses import group_mask
from nids_core.detection.evidence import evidence_frame, why_json
from nids_core.detection.sensitivity import Thresholds

LONG_CONNECTION_THREAT = 0.2


def long_connections(flows: pl.DataFrame, th: Thresholds) -> pl.DataFrame:
    if flows.is_empty():
        return evidence_frame([])
    long = flows.filter(
        pl.col("duration") >= th.long_connection_seconds, ~group_mask(flows["resp_h"])
    ).with_columns(window_start=pl.col("ts").dt.truncate("1d"))
    groups = long.group_by("orig_h", "resp_h", "resp_p", "proto", "window_start").agg(
        n=pl.len(),
        longest=pl.col("duration").max(),
        total=pl.col("duration").sum(),
        sent=pl.col("orig_bytes").fill_null(0).sum(),
        uids=pl.col("uid"),
        first=pl.col("ts").min(),
        last=(
            pl.col("ts") + pl.duration(microseconds=(pl.col("duration") * 1e6).cast(pl.Int64))
        ).max(),
    )
    rows = [
        {
            "detector": "long_connection",
            "host": g["orig_h"],
            "peers": [g["resp_h"]],
            "ports": [int(g["resp_p"])],
            "window_start": g["window_start"],
            "window_end": g["window_start"] + timedelta(days=1),
            "first_seen": g["first"],
            "last_seen": g["last"],
            "flows": int(g["n"]),
            "uids": g["uids"],
            "threat_level": LONG_CONNECTION_THREAT,
            "confidence": min(1.0, g["total"] / (4 * th.long_connection_seconds)),
            "description": f"{g['orig_h']} held {g['resp_h']}:{g['resp_p']}/{g['proto']} open "
            f"for {g['longest'] / 3600:.1f} h ({g['n']} connections)",
            "why": why_json(
                {
                    "longest_s": round(g["longest"], 1),
                    "total_s": round(g["total"], 1),
                    "bytes_sent": g["sent"],
                    "threshold_s": th.long_connection_seconds,
                }
            ),
            "key": f"{g['resp_h']}|{g['resp_p']}|{g['proto']}",
        }
        for g in groups.iter_rows(named=True)
    ]
    return evidence_frame(rows)
