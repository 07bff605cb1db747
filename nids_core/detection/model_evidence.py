"""Evidence from the served model: per source host and alert window, the flows the
champion predicted as attacks, with why: the scores, and the host's graph neighbourhood in
that window (its fan-out, ports, failed share, the peers and ports of the flagged flows),
which is what the graph context the model scores with is made of."""

from __future__ import annotations

from datetime import timedelta

import polars as pl

from nids_core.detection.evidence import evidence_frame, why_json
from nids_core.detection.scans import FAILED_STATES
from nids_core.detection.sensitivity import Thresholds
from nids_core.schema import LABEL_MALICIOUS

TOP = 5
SURE_AT_FLOWS = 10  # flagged flows at which the model's evidence has full confidence


def model_evidence(flows: pl.DataFrame, window_minutes: int, th: Thresholds) -> pl.DataFrame:
    """`flows` carry `score`, `predicted_label` and `model_version` (null: not scored)."""
    scored = flows.filter(pl.col("score").is_not_null())
    if scored.is_empty():
        return evidence_frame([])
    w = scored.with_columns(
        window_start=pl.col("ts").dt.truncate(f"{window_minutes}m"),
        flagged=pl.col("predicted_label") == LABEL_MALICIOUS,
        failed=pl.col("conn_state").is_in(FAILED_STATES),
    )
    flagged = pl.col("flagged")
    groups = (
        w.group_by("orig_h", "window_start")
        .agg(
            host_flows=pl.len(),
            fan_out=pl.col("resp_h").n_unique(),
            distinct_ports=pl.col("resp_p").n_unique(),
            failed_share=pl.col("failed").mean(),
            n=flagged.sum(),
            max_score=pl.col("score").filter(flagged).max(),
            mean_score=pl.col("score").filter(flagged).mean(),
            peers=pl.col("resp_h").filter(flagged).value_counts(sort=True).head(TOP),
            ports=pl.col("resp_p").filter(flagged).value_counts(sort=True).head(TOP),
            states=pl.col("conn_state").filter(flagged).value_counts(sort=True).head(TOP),
            uids=pl.col("uid").filter(flagged),
            top=pl.struct("uid", "resp_h", "resp_p", "score")
            .sort_by(pl.col("score"), descending=True)
            .filter(flagged.sort_by(pl.col("score"), descending=True))
            .head(TOP),
            versions=pl.col("model_version").filter(flagged).unique().sort(),
            first=pl.col("ts").filter(flagged).min(),
            last=pl.col("ts").filter(flagged).max(),
        )
        .filter(pl.col("n") >= th.model_min_flows)
    )
    rows = []
    for g in groups.iter_rows(named=True):
        peers = [p["resp_h"] for p in g["peers"]]
        ports = [int(p["resp_p"]) for p in g["ports"]]
        rows.append(
            {
                "detector": "model",
                "host": g["orig_h"],
                "peers": peers,
                "ports": ports,
                "window_start": g["window_start"],
                "window_end": g["window_start"] + timedelta(minutes=window_minutes),
                "first_seen": g["first"],
                "last_seen": g["last"],
                "flows": int(g["n"]),
                "uids": g["uids"],
                "threat_level": g["mean_score"],
                "confidence": min(1.0, g["n"] / SURE_AT_FLOWS),
                "description": f"model v{','.join(g['versions'])} flagged {g['n']} of "
                f"{g['host_flows']} flows of {g['orig_h']} (max score {g['max_score']:.2f}; "
                f"to {len(peers)} peers, ports {', '.join(map(str, ports))})",
                "why": why_json(
                    {
                        "flagged_flows": g["n"],
                        "max_score": round(g["max_score"], 4),
                        "mean_score": round(g["mean_score"], 4),
                        "model_versions": g["versions"],
                        "graph_context": {
                            "host_flows": g["host_flows"],
                            "fan_out": g["fan_out"],
                            "distinct_ports": g["distinct_ports"],
                            "failed_share": round(g["failed_share"], 4),
                        },
                        "top_peers": [[p["resp_h"], p["count"]] for p in g["peers"]],
                        "top_ports": [[p["resp_p"], p["count"]] for p in g["ports"]],
                        "conn_states": [[s["conn_state"], s["count"]] for s in g["states"]],
                        "top_flows": [{**t, "score": round(t["score"], 4)} for t in g["top"]],
                    }
                ),
                "key": "",
            }
        )
    return evidence_frame(rows)
