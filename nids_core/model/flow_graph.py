"""The flow graph: hosts are nodes, flows are directed edges carrying their features.

A graph is built for any set of flows. Flows are grouped into time windows (and, when the
flows carry one, by capture/network, so unrelated networks that reuse private addresses
never share a node): a host seen in two windows is two nodes. Each window is a separate
component of one disjoint graph, so a training set and an inference window of the hot
table are built the same way, and each flow sees only its recent neighbours.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch_geometric.data import Data

from nids_core.model.graph_window import DEFAULT_WINDOW, GraphWindow, window_number


def endpoint_nodes(
    flows: pl.DataFrame, window: GraphWindow = DEFAULT_WINDOW
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Node ids of each flow's originator and responder, the node count and window count."""
    bucket = window_number(window)
    group = (
        pl.col("capture").fill_null("")
        if "capture" in flows.columns
        else pl.lit("", dtype=pl.String)
    )
    keyed = flows.select(
        group.alias("g"), bucket.alias("w"), pl.col("orig_h"), pl.col("resp_h")
    ).with_columns(
        pl.concat_str([pl.col("g"), pl.col("w").cast(pl.String)], separator="|").alias("win")
    )
    orig_key = pl.concat_str([pl.col("win"), pl.col("orig_h")], separator="|")
    resp_key = pl.concat_str([pl.col("win"), pl.col("resp_h")], separator="|")
    keys = keyed.select(orig_key.alias("o"), resp_key.alias("r"))
    n = keys.height
    both = pl.concat([keys["o"], keys["r"]]).to_frame("k")
    ids = both.select(pl.col("k").rank("dense") - 1)["k"].to_numpy().astype(np.int64)
    num_nodes = int(ids.max()) + 1 if n else 0
    windows = keyed["win"].n_unique() if n else 0
    return ids[:n], ids[n:], num_nodes, windows


def build_flow_graph(
    flows: pl.DataFrame,
    edge_features: np.ndarray,
    labels: np.ndarray | None = None,
    window: GraphWindow = DEFAULT_WINDOW,
) -> Data:
    """A PyG graph whose edge i is flow i (same row order as `flows`)."""
    if len(edge_features) != flows.height:
        raise ValueError("one feature row per flow is required")
    src, dst, num_nodes, windows = endpoint_nodes(flows, window)
    data = Data(
        edge_index=torch.from_numpy(np.stack([src, dst])) if len(src) else torch.empty(2, 0).long(),
        edge_attr=torch.from_numpy(np.asarray(edge_features, dtype=np.float32)),
        num_nodes=num_nodes,
    )
    data.windows = windows
    if labels is not None:
        data.y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    return data
