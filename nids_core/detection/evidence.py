"""Evidence: one row per detection, the unit every detector writes and alerts are summed from.

A row says which detector saw what (host, peers, ports, window, the Zeek uids it rests
on), how bad it would be if true (`threat_level`, 0..1, Slips' scale: 0.2 low, 0.5 medium,
0.8 high) and how sure the detector is (`confidence`, 0..1), in one line (`description`)
and in full (`why`, a JSON object whose keys are the detector's own). Its id is derived
from what it is about (detector, host, window, key), so a refresh that finds the same
detection again writes the same row."""

from __future__ import annotations

import json
from datetime import datetime

import polars as pl

from nids_core.checksum import sha256_hex

DETECTORS: tuple[str, ...] = (
    "model",
    "horizontal_scan",
    "vertical_scan",
    "beacon",
    "long_connection",
)
MAX_UIDS = 500  # uids kept per evidence row; `flows` counts them all

EVIDENCE_SCHEMA: dict[str, pl.DataType] = {
    "evidence_id": pl.String(),
    "detector": pl.String(),
    "host": pl.String(),
    "peers": pl.List(pl.String()),
    "ports": pl.List(pl.Int32()),
    "window_start": pl.Datetime("us", "UTC"),
    "window_end": pl.Datetime("us", "UTC"),
    "first_seen": pl.Datetime("us", "UTC"),
    "last_seen": pl.Datetime("us", "UTC"),
    "flows": pl.Int64(),
    "uids": pl.List(pl.String()),
    "threat_level": pl.Float64(),
    "confidence": pl.Float64(),
    "description": pl.String(),
    "why": pl.String(),
}
EVIDENCE_COLUMNS = list(EVIDENCE_SCHEMA)


def evidence_id(detector: str, host: str, window_start: datetime, key: str = "") -> str:
    """A stable id for the detection of `detector` about `host` in the window at
    `window_start` (and `key`, e.g. the beacon's peer and port)."""
    text = f"{detector}|{host}|{window_start.isoformat()}|{key}"
    return sha256_hex(text, 24)


def why_json(why: dict) -> str:
    return json.dumps(why, sort_keys=True, default=str)


def empty_evidence() -> pl.DataFrame:
    return pl.DataFrame(schema=EVIDENCE_SCHEMA)


def evidence_frame(rows: list[dict]) -> pl.DataFrame:
    """Rows (dicts with every evidence column but `evidence_id` and a `key`) as a frame."""
    if not rows:
        return empty_evidence()
    for r in rows:
        r["evidence_id"] = evidence_id(r["detector"], r["host"], r["window_start"], r.pop("key"))
        r["uids"] = sorted(r["uids"])[:MAX_UIDS]
        r["threat_level"] = float(min(1.0, max(0.0, r["threat_level"])))
        r["confidence"] = float(min(1.0, max(0.0, r["confidence"])))
    return pl.DataFrame(rows, schema=EVIDENCE_SCHEMA).select(EVIDENCE_COLUMNS)
