"""E-GraphSAGE-style edge classifier (PyTorch Geometric) and the scorer that serves it.

Two message-passing layers aggregate the features of a host's flows (and its peers'
embeddings) into a node embedding; a flow is classified from its two endpoints'
embeddings and its own features. Messages run along both directions of every flow, with a
direction flag, so originators and responders both learn from their flows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl
import torch
from torch import nn
from torch_geometric.data import Data
from torch_geometric.nn import MessagePassing

from nids_core.model.candidates import NEEDS_CONTEXT_TREES, NEEDS_GNN, combine
from nids_core.model.features import FeatureSpec, transform
from nids_core.model.flow_graph import build_flow_graph
from nids_core.model.graph_window import GraphWindow
from nids_core.model.served import attack_probability, forest_scores


class EdgeSAGELayer(MessagePassing):
    """h_v' = ReLU(W_u [h_v || mean_{(u,v)} ReLU(W_m [h_u || e_uv || d_uv])]), where every
    flow sends a message both ways and d_uv (+1 along the flow, -1 against it) says which.

    W_m [h_u || e || d] is computed as (W_h h)_u + W_e e + w_d d: the node part once per
    node and the flow part once per flow for both directions, so no (2 x flows) matrix of
    concatenated inputs is ever built. The weights are those of W_m, unchanged.
    """

    def __init__(self, node_in: int, edge_in: int, out: int):
        super().__init__(aggr="mean")
        self.message_lin = nn.Linear(node_in + edge_in, out)
        self.update_lin = nn.Linear(node_in + out, out)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor):
        """`edge_attr`: each flow's features without the direction flag."""
        node_in = x.shape[1]
        weight = self.message_lin.weight
        from_node = x @ weight[:, :node_in].T
        from_flow = edge_attr @ weight[:, node_in:-1].T
        # The bias and the direction term are per node (few), added before the gather.
        along = from_node + (self.message_lin.bias + weight[:, -1])
        against = from_node + (self.message_lin.bias - weight[:, -1])
        src, dst = edge_index
        total = x.new_zeros(x.shape[0], weight.shape[0])
        # In place on the (flows x hidden) messages: each is one pass over memory.
        total = total.index_add(0, dst, along[src].add_(from_flow).relu_())
        total = total.index_add(0, src, against[dst].add_(from_flow).relu_())
        degree = torch.bincount(edge_index.flatten(), minlength=x.shape[0]).clamp_min(1)
        aggregated = total / degree.unsqueeze(1).to(total.dtype)
        return torch.relu(self.update_lin(torch.cat([x, aggregated], dim=-1)))


class EGraphSAGE(nn.Module):
    """Two EdgeSAGE layers over the host graph and a head per flow (2 logits).

    With `flow_head`, a flow-feature path has its own head and the graph path's logits are
    added to it: graph evidence adds to flow evidence instead of replacing it.
    """

    def __init__(
        self,
        edge_dim: int,
        hidden: int = 64,
        dropout: float = 0.2,
        flow_head: bool = False,
        head_flow_features: bool = True,
    ):
        super().__init__()
        self.edge_dim = edge_dim
        self.head_flow_features = head_flow_features
        self.layer1 = EdgeSAGELayer(1, edge_dim + 1, hidden)
        self.layer2 = EdgeSAGELayer(hidden, edge_dim + 1, hidden)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Sequential(
            nn.Linear(2 * hidden + (edge_dim if head_flow_features else 0), hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 2),
        )
        self.flow_head = (
            nn.Sequential(
                nn.Linear(edge_dim, hidden),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(hidden, hidden),
                nn.ReLU(),
                nn.Linear(hidden, 2),
            )
            if flow_head
            else None
        )

    def forward(self, data: Data, edges: torch.Tensor | None = None) -> torch.Tensor:
        """Logits per flow (per flow of `edges`, indices into the graph's flows, when
        given); with a flow head, the log of the mean of the flow path's and the fused
        path's probabilities (each trained with its own loss)."""
        flow_logits, fused_logits = self.parts(data, edges)
        if flow_logits is None:
            return fused_logits
        mean = 0.5 * (torch.softmax(flow_logits, -1) + torch.softmax(fused_logits, -1))
        return torch.log(mean.clamp_min(1e-12))

    def parts(
        self, data: Data, edges: torch.Tensor | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(flow-path logits or None, fused logits), for all flows or those of `edges`: the
        host embeddings come from every flow of the graph either way."""
        e = data.edge_attr
        x = torch.ones(int(data.num_nodes), 1, dtype=e.dtype)
        h = self.layer1(x, data.edge_index, e)
        h = self.dropout(h)
        h = self.layer2(h, data.edge_index, e)
        src, dst = data.edge_index
        if edges is not None:
            src, dst, e = src[edges], dst[edges], e[edges]
        graph_logits = self.head[1:](self._head_input(h, src, dst, e))
        if self.flow_head is None:
            return None, graph_logits
        flow_logits = self.flow_head(e)
        return flow_logits, flow_logits + graph_logits

    def _head_input(
        self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, e: torch.Tensor
    ) -> torch.Tensor:
        """The head's first layer on [h_src || h_dst || e] (e only with head_flow_features;
        a graph-only head sees the endpoints' embeddings, not the flow's own features),
        computed per node for the embeddings and gathered per flow."""
        first = self.head[0]
        hidden = h.shape[1]
        weight = first.weight
        out = torch.addmm(first.bias, h, weight[:, :hidden].T)[src]
        out.add_((h @ weight[:, hidden : 2 * hidden].T)[dst])
        if self.head_flow_features:
            out.addmm_(e, weight[:, 2 * hidden :].T)
        return out


class FlowScorer(nn.Module):
    """What is logged to MLflow: the network plus everything needed to score raw flows
    (feature spec with scaler, graph window, decision threshold)."""

    def __init__(
        self,
        network: EGraphSAGE,
        spec: FeatureSpec,
        window: GraphWindow,
        threshold: float = 0.5,
    ):
        super().__init__()
        self.network = network
        self.spec = spec
        self.window = window
        self.threshold = threshold

    def forward(self, data: Data) -> torch.Tensor:
        return self.network(data)

    def graph(
        self,
        flows: pl.DataFrame,
        labels: np.ndarray | None = None,
        features: np.ndarray | None = None,
    ) -> Data:
        """The flow graph; `features` = transform(flows, spec) when the caller has them."""
        edge_features = transform(flows, self.spec) if features is None else features
        return build_flow_graph(flows, edge_features, labels, self.window)

    @torch.no_grad()
    def score(
        self,
        flows: pl.DataFrame,
        features: np.ndarray | None = None,
        targets: np.ndarray | None = None,
    ) -> np.ndarray:
        """Attack probability per flow, in the order of `flows`; with `targets` (increasing
        row indices), of those flows only, the others being their context."""
        if flows.height == 0 or (targets is not None and len(targets) == 0):
            return np.zeros(0, dtype=np.float64)
        self.eval()
        edges = None if targets is None else torch.from_numpy(np.asarray(targets, np.int64))
        logits = self.network(self.graph(flows, features=features), edges)
        return torch.softmax(logits, dim=-1)[:, 1].double().numpy()


class HybridScorer(FlowScorer):
    """The served model (nids_core.model.candidates): the graph model, the context trees
    (nids_core.model.served) and the flow-only trees, combined as `candidate` says, at a
    cut chosen over held-out networks. The graph model alone stays available for every
    report (`gnn_score`, `gnn_threshold`)."""

    def __init__(
        self,
        network: EGraphSAGE,
        spec: FeatureSpec,
        window: GraphWindow,
        gnn_threshold: float,
        forest,
        threshold: float,
        candidate: str = "max_fusion",
        flow_forest=None,
    ):
        super().__init__(network, spec, window, threshold)
        self.gnn_threshold = gnn_threshold
        self.forest = forest
        self.candidate = candidate
        self.flow_forest = flow_forest

    @property
    def served_candidate(self) -> str:
        return self.candidate

    def gnn_score(
        self,
        flows: pl.DataFrame,
        features: np.ndarray | None = None,
        targets: np.ndarray | None = None,
    ) -> np.ndarray:
        return super().score(flows, features, targets)

    def score(
        self,
        flows: pl.DataFrame,
        features: np.ndarray | None = None,
        targets: np.ndarray | None = None,
    ) -> np.ndarray:

        if flows.height == 0 or (targets is not None and len(targets) == 0):
            return np.zeros(0, dtype=np.float64)
        candidate = self.served_candidate
        # The flow features feed every part: computed once.
        features = transform(flows, self.spec) if features is None else features
        gnn = self.gnn_score(flows, features, targets) if candidate in NEEDS_GNN else None
        trees = (
            forest_scores(self.forest, flows, self.spec, self.window, features, targets)
            if candidate in NEEDS_CONTEXT_TREES
            else None
        )
        flow_only = None
        if candidate == "flow_trees":
            own = features if targets is None else features[np.asarray(targets, np.int64)]
            classes = list(self.flow_forest.classes_)
            flow_only = (
                attack_probability(self.flow_forest, own)
                if len(classes) > 1
                else np.full(len(own), float(classes[0]))
            )
        return combine(candidate, gnn, trees, flow_only)


def graph_model_parts(scorer: FlowScorer) -> tuple[Callable[[pl.DataFrame], np.ndarray], float]:
    """The graph model alone: (score function, threshold), for reports."""
    if isinstance(scorer, HybridScorer):
        return scorer.gnn_score, scorer.gnn_threshold
    return scorer.score, scorer.threshold
