"""Beacons, RITA-style: an internal host calling one external host and port at regular
intervals with regular sizes, as implants call their command-and-control server. Scored
per (host, peer, port, UTC day) from at least `beacon_min_connections` connections:

- time score: the mean of regularity (the mean of 1 - |Bowley skew| of the intervals
  between connections and 1 - their median absolute deviation relative to their median: a
  clock-driven beacon has both near 1) and persistence (the share of the hours the sensor
  saw traffic that day in which the pair connected, RITA's duration score);
- size score: 1 - |Bowley skew| of the bytes sent, 1 - their MAD over 32 bytes, and
  smallness (1 - the commonest size over 64 KiB);
- score: the mean of the two. RITA's own default threshold is 0.8."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl

from nids_core.detection.addresses import outward_mask
from nids_core.detection.evidence import evidence_frame, why_json
from nids_core.detection.sensitivity import Thresholds

BEACON_THREAT = 0.5
# Infrastructure every host calls on a clock (DNS, NTP, mDNS, SSDP, NetBIOS): not beacons.
IGNORED_UDP_PORTS = frozenset({53, 123, 137, 138, 1900, 5353})


def bowley_skew(values: np.ndarray) -> float:
    q1, q2, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    if q3 == q1:
        return 0.0
    return float((q3 + q1 - 2 * q2) / (q3 - q1))


def mad(values: np.ndarray) -> float:
    return float(np.median(np.abs(values - np.median(values))))


def beacon_scores(
    ts_seconds: np.ndarray, sizes: np.ndarray, observed_hours: int = 24
) -> dict[str, float]:
    """The parts of a beacon score of one pair's connections (times in seconds) on a day
    the sensor saw traffic in `observed_hours` hours."""
    deltas = np.diff(np.sort(ts_seconds))
    median_delta = float(np.median(deltas))
    ts_skew = 1 - abs(bowley_skew(deltas))
    ts_mad = max(0.0, 1 - mad(deltas) / median_delta) if median_delta > 0 else 0.0
    ds_skew = 1 - abs(bowley_skew(sizes))
    ds_mad = max(0.0, 1 - mad(sizes) / 32)
    values, counts = np.unique(sizes, return_counts=True)
    ds_small = max(0.0, 1 - float(values[np.argmax(counts)]) / 65535)
    hours = len(np.unique((ts_seconds // 3600).astype(np.int64)))
    persistence = min(1.0, hours / max(1, observed_hours))
    regularity = (ts_skew + ts_mad) / 2
    ts_score = (regularity + persistence) / 2
    ds_score = (ds_skew + ds_mad + ds_small) / 3
    return {
        "score": round((ts_score + ds_score) / 2, 4),
        "time_score": round(ts_score, 4),
        "regularity": round(regularity, 4),
        "persistence": round(persistence, 4),
        "hours_connected": hours,
        "hours_observed": int(observed_hours),
        "size_score": round(ds_score, 4),
        "median_interval_s": round(median_delta, 3),
        "interval_mad_s": round(mad(deltas), 3),
        "interval_skew": round(1 - ts_skew, 4),
        "bytes_mad": round(mad(sizes), 1),
        "commonest_bytes": int(values[np.argmax(counts)]),
    }


def observed_hours(flows: pl.DataFrame) -> dict:
    """Per UTC day, the hours in which `flows` hold any flow."""
    hours = (
        flows.select(day=pl.col("ts").dt.truncate("1d"), hour=pl.col("ts").dt.truncate("1h"))
        .group_by("day")
        .agg(pl.col("hour").n_unique())
    )
    return dict(hours.iter_rows())


def beacons(flows: pl.DataFrame, th: Thresholds, hours_per_day: dict | None = None) -> pl.DataFrame:
    """Evidence per (internal host, external unicast peer, port, UTC day) whose beacon
    score reaches `beacon_min_score`. `hours_per_day`: the hours the sensor saw traffic
    on each day (default: those of `flows`)."""
    if flows.is_empty():
        return evidence_frame([])
    hours_per_day = hours_per_day or observed_hours(flows)
    outward = flows.filter(outward_mask(flows)).filter(
        ~((pl.col("proto") == "udp") & pl.col("resp_p").is_in(sorted(IGNORED_UDP_PORTS)))
    )
    day = outward.with_columns(window_start=pl.col("ts").dt.truncate("1d"))
    pairs = (
        day.group_by("orig_h", "resp_h", "resp_p", "proto", "window_start")
        .agg(
            n=pl.len(),
            seconds=pl.col("ts").dt.epoch("us") / 1e6,
            sizes=pl.col("orig_bytes").fill_null(0),
            uids=pl.col("uid"),
            first=pl.col("ts").min(),
            last=pl.col("ts").max(),
        )
        .filter(pl.col("n") >= th.beacon_min_connections)
    )
    rows = []
    for g in pairs.iter_rows(named=True):
        parts = beacon_scores(
            np.asarray(g["seconds"]),
            np.asarray(g["sizes"], dtype=float),
            hours_per_day.get(g["window_start"], 24),
        )
        if parts["score"] < th.beacon_min_score:
            continue
        rows.append(
            {
                "detector": "beacon",
                "host": g["orig_h"],
                "peers": [g["resp_h"]],
                "ports": [int(g["resp_p"])],
                "window_start": g["window_start"],
                "window_end": g["window_start"] + timedelta(days=1),
                "first_seen": g["first"],
                "last_seen": g["last"],
                "flows": int(g["n"]),
                "uids": g["uids"],
                "threat_level": BEACON_THREAT,
                # 0 at the threshold, 1 at a perfect score.
                "confidence": 0.5
                + 0.5 * (parts["score"] - th.beacon_min_score) / max(1e-9, 1 - th.beacon_min_score),
                "description": f"{g['orig_h']} calls {g['resp_h']}:{g['resp_p']}/{g['proto']} "
                f"every {parts['median_interval_s']:.0f} s in {parts['hours_connected']} of "
                f"{parts['hours_observed']} hours ({g['n']} connections, beacon score "
                f"{parts['score']:.2f})",
                "why": why_json({**parts, "connections": g["n"], "threshold": th.beacon_min_score}),
                "key": f"{g['resp_h']}|{g['resp_p']}|{g['proto']}",
            }
        )
    return evidence_frame(rows)
