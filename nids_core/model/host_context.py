"""Graph context that does not encode one network's shape: how each flow's two hosts behave
in the flow's time window, as shares of that window (every value lies in [0, 1], so a
network larger or busier than any seen in training saturates instead of extrapolating).

For the originator: its share of the window's flows and hosts it talks to (fan-out),
distinct destination ports per flow, share of failed connections, and how often it is the
originator of the flows it is in (its role). For the responder: fan-in, its share of the
window's flows, failed share and role. For the pair: its share of the originator's flows.
Windows (and networks, when flows carry a capture) are those of the flow graph.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from nids_core.model.graph_window import GraphWindow, window_number

# Zeek states of a connection that was not established (or was refused or torn down early).
FAILED_STATES = ("S0", "REJ", "RSTOS0", "RSTRH", "SH", "SHR", "OTH")
CONTEXT_NAMES = (
    "orig_flow_share",
    "orig_fanout_share",
    "orig_port_spread",
    "orig_failed_share",
    "orig_originator_share",
    "resp_flow_share",
    "resp_fanin_share",
    "resp_failed_share",
    "resp_originator_share",
    "pair_share_of_orig",
)


def _window_key(flows: pl.DataFrame, window: GraphWindow) -> pl.Expr:
    group = pl.col("capture").fill_null("") if "capture" in flows.columns else pl.lit("")
    bucket = window_number(window)
    return pl.concat_str([group, bucket.cast(pl.String)], separator="|")


def context_features(
    flows: pl.DataFrame, window: GraphWindow, rows: np.ndarray | None = None
) -> np.ndarray:
    """(flows x CONTEXT_NAMES) float32 matrix, in the order of `flows`; with `rows`
    (increasing indices), for those flows only, their windows' shares still counted over
    all of `flows`."""
    if flows.height == 0 or (rows is not None and len(rows) == 0):
        return np.zeros((0, len(CONTEXT_NAMES)), dtype=np.float32)
    f = flows.select(
        _window_key(flows, window).alias("w"),
        "orig_h",
        "resp_h",
        "resp_p",
        pl.col("conn_state").is_in(list(FAILED_STATES)).fill_null(False).alias("failed"),
    ).with_row_index("i")
    per_window = f.group_by("w").agg(
        pl.len().alias("w_flows"),
        pl.concat_list("orig_h", "resp_h").explode().n_unique().alias("w_hosts"),
    )
    # Every flow seen from both of its hosts: as originator and as responder.
    ends = pl.concat(
        [
            f.select("w", pl.col("orig_h").alias("h"), "failed", pl.lit(1.0).alias("as_orig")),
            f.select("w", pl.col("resp_h").alias("h"), "failed", pl.lit(0.0).alias("as_orig")),
        ]
    )
    per_host = ends.group_by("w", "h").agg(
        pl.len().alias("h_flows"),
        pl.col("failed").mean().alias("h_failed"),
        pl.col("as_orig").mean().alias("h_orig_share"),
    )
    per_orig = f.group_by("w", "orig_h").agg(
        pl.col("resp_h").n_unique().alias("fanout"),
        pl.col("resp_p").n_unique().alias("ports"),
        pl.len().alias("o_flows"),
    )
    per_resp = f.group_by("w", "resp_h").agg(pl.col("orig_h").n_unique().alias("fanin"))
    per_pair = f.group_by("w", "orig_h", "resp_h").agg(pl.len().alias("pair_flows"))
    out = (
        (f if rows is None else f[np.asarray(rows, dtype=np.int64)])
        .join(per_window, on="w", how="left")
        .join(per_orig, on=["w", "orig_h"], how="left")
        .join(per_resp, on=["w", "resp_h"], how="left")
        .join(per_pair, on=["w", "orig_h", "resp_h"], how="left")
        .join(
            per_host.rename(
                {"h": "orig_h", "h_flows": "of", "h_failed": "ofail", "h_orig_share": "orole"}
            ),
            on=["w", "orig_h"],
            how="left",
        )
        .join(
            per_host.rename(
                {"h": "resp_h", "h_flows": "rf", "h_failed": "rfail", "h_orig_share": "rrole"}
            ),
            on=["w", "resp_h"],
            how="left",
        )
        .sort("i")
    )
    hosts = pl.col("w_hosts").cast(pl.Float64).clip(lower_bound=2) - 1
    matrix = out.select(
        (pl.col("of") / pl.col("w_flows")).alias("orig_flow_share"),
        (pl.col("fanout") / hosts).alias("orig_fanout_share"),
        (pl.col("ports") / pl.col("o_flows")).alias("orig_port_spread"),
        pl.col("ofail").alias("orig_failed_share"),
        pl.col("orole").alias("orig_originator_share"),
        (pl.col("rf") / pl.col("w_flows")).alias("resp_flow_share"),
        (pl.col("fanin") / hosts).alias("resp_fanin_share"),
        pl.col("rfail").alias("resp_failed_share"),
        pl.col("rrole").alias("resp_originator_share"),
        (pl.col("pair_flows") / pl.col("o_flows")).alias("pair_share_of_orig"),
    )
    return np.clip(matrix.to_numpy().astype(np.float32), 0.0, 1.0)
