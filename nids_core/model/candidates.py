"""What can be served, simplest first, and how each turns a flow's scores into one.

- `flow_trees`: ExtraTrees on the flow's own features (the flow-only baseline's model).
- `context_trees`: ExtraTrees on the flow's features and its hosts' window context
  (nids_core.model.host_context), every network weighing the same in the fit.
- `gnn`: the graph model alone (nids_core.model.gnn).
- `mean_fusion`: the mean of the graph model's and the context trees' probabilities.
- `max_fusion`: the larger of the two (what was served before selection existed).

Which one is served, and at which cut, is chosen over held-out networks
(nids_core.evaluation.lono); a more complex candidate is chosen only when it is better
than every simpler one by more than SIMPLER_WITHIN.
"""

from __future__ import annotations

import numpy as np

SERVABLE = ("flow_trees", "context_trees", "gnn", "mean_fusion", "max_fusion")
# A candidate is preferred to a simpler one only when its mean macro F1 over held-out
# networks is higher by more than this (less is within the seed spread measured here).
SIMPLER_WITHIN = 0.005
# `serve` settings: a candidate's name, "auto" (chosen over held-out networks) or the
# older names ("hybrid" = max_fusion).
SERVE_ALIASES = {"hybrid": "max_fusion"}
SERVE_SETTINGS = ("auto", *SERVABLE, *SERVE_ALIASES)
NEEDS_GNN = frozenset({"gnn", "mean_fusion", "max_fusion"})
NEEDS_CONTEXT_TREES = frozenset({"context_trees", "mean_fusion", "max_fusion"})


def candidate_name(serve: str) -> str:
    """The candidate a `serve` setting names ("auto" stays "auto")."""
    name = SERVE_ALIASES.get(serve, serve)
    if name != "auto" and name not in SERVABLE:
        raise ValueError(f"serve={serve!r}: use one of {', '.join(SERVE_SETTINGS)}")
    return name


def combine(
    candidate: str,
    gnn: np.ndarray | None,
    context_trees: np.ndarray | None,
    flow_trees: np.ndarray | None,
) -> np.ndarray:
    """The candidate's attack probability from its parts' probabilities."""
    parts = {"gnn": gnn, "context_trees": context_trees, "flow_trees": flow_trees}
    if candidate in parts:
        score = parts[candidate]
    elif candidate == "mean_fusion":
        score = None if gnn is None or context_trees is None else 0.5 * (gnn + context_trees)
    elif candidate == "max_fusion":
        score = None if gnn is None or context_trees is None else np.maximum(gnn, context_trees)
    else:
        raise ValueError(f"unknown candidate {candidate!r}")
    if score is None:
        raise ValueError(f"candidate {candidate} needs a part that was not computed")
    return score


def fold_candidates(
    gnn: np.ndarray, context_trees: np.ndarray, flow_trees: np.ndarray
) -> dict[str, np.ndarray]:
    """Every candidate's scores from the three parts' scores on the same flows."""
    return {c: combine(c, gnn, context_trees, flow_trees) for c in SERVABLE}
