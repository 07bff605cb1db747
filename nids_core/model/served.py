"""The context trees, the tree half of what can be served: an ExtraTrees ensemble over each
flow's own features and its hosts' window context (nids_core.model.host_context), every
network weighing the same in the fit, plus the validation cut used when no held-out
networks chose one.

Which candidate is served (these trees alone, the graph model, or a fusion of both) and at
which cut is chosen over held-out networks (nids_core.model.candidates,
nids_core.evaluation.lono). The trees see the graph as context shares that saturate instead
of encoding one network's shape, so one large capture does not define "normal".
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl
from sklearn.ensemble import ExtraTreesClassifier
from sklearn.metrics import f1_score

from nids_core.model.features import FeatureSpec, attack_labels, transform
from nids_core.model.graph_window import GraphWindow
from nids_core.model.host_context import context_features

SERVED_TREES = 200
VALIDATION_TREES = 100  # the forest fitted on training rows only, to score validation rows
# The trees are walked in this many blocks, one thread each (as many at once as there are
# cores). Fixed, so the order in which votes are added, and so every score to the last
# bit, is the same on every machine.
TREE_BLOCKS = 4
_CANDIDATE_THRESHOLDS = np.round(np.arange(0.02, 0.99, 0.02), 2)


def served_matrix(
    flows: pl.DataFrame,
    spec: FeatureSpec,
    window: GraphWindow,
    features: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Flow features (`features` = transform(flows, spec) when the caller has them) and
    host context, side by side; for the flows at `rows` (increasing indices) only, when
    given, their context still drawn from all of `flows`."""
    own = transform(flows, spec) if features is None else features
    if rows is not None:
        own = own[rows]
    return np.hstack([own, context_features(flows, window, rows)])


def network_weights(flows: pl.DataFrame) -> np.ndarray:
    """Sample weights giving every network (capture) the same total weight."""
    if "capture" not in flows.columns:
        return np.ones(flows.height)
    networks = flows["capture"].fill_null("")
    counts = networks.value_counts()
    size = dict(zip(counts[networks.name], counts["count"], strict=True))
    return np.array([flows.height / (len(size) * size[n]) for n in networks.to_list()])


def fit_forest(
    flows: pl.DataFrame,
    spec: FeatureSpec,
    window: GraphWindow,
    seed: int,
    trees: int = SERVED_TREES,
) -> ExtraTreesClassifier:
    model = ExtraTreesClassifier(
        n_estimators=trees,
        min_samples_leaf=2,
        class_weight="balanced",
        n_jobs=-1,
        random_state=seed,
    )
    model.fit(served_matrix(flows, spec, window), attack_labels(flows), network_weights(flows))
    # Fitted in parallel; predicted by attack_probability, not by predict_proba's threads,
    # which add the trees' votes in whatever order they finish.
    model.set_params(n_jobs=1)
    return model


def _block_votes(model: ExtraTreesClassifier, trees: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """The sum, tree by tree in order, of the attack share of the leaf each row reaches."""
    attack = list(model.classes_).index(1)
    total = np.zeros(matrix.shape[0])
    for i in trees:
        tree = model.estimators_[i].tree_
        counts = tree.value[:, 0, :]
        per_leaf = counts[:, attack] / np.where(counts.sum(1) > 0, counts.sum(1), 1.0)
        total += per_leaf[tree.apply(matrix)]
    return total


def attack_probability(model: ExtraTreesClassifier, matrix: np.ndarray) -> np.ndarray:
    """predict_proba's attack column (up to rounding): the mean over trees of the attack
    share of each row's leaf. The trees are walked in TREE_BLOCKS blocks in parallel
    threads (a tree's walk releases the GIL), each block summed in tree order and the
    blocks added in order, so a row's score does not depend on the machine or the run."""
    matrix = np.asarray(matrix, dtype=np.float32)
    blocks = np.array_split(np.arange(len(model.estimators_)), TREE_BLOCKS)
    with ThreadPoolExecutor(min(TREE_BLOCKS, os.cpu_count() or 1)) as pool:
        sums = list(pool.map(lambda trees: _block_votes(model, trees, matrix), blocks))
    total = sums[0]
    for block in sums[1:]:
        total = total + block
    return total / len(model.estimators_)


def forest_scores(
    model: ExtraTreesClassifier,
    flows: pl.DataFrame,
    spec: FeatureSpec,
    window: GraphWindow,
    features: np.ndarray | None = None,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """Attack probability of each flow (of those at `rows`, when given)."""
    n = flows.height if rows is None else len(rows)
    if n == 0:
        return np.zeros(0)
    if len(model.classes_) == 1:
        return np.full(n, float(model.classes_[0]))
    return attack_probability(model, served_matrix(flows, spec, window, features, rows))


def _quality(y: np.ndarray, predicted: np.ndarray) -> float:
    """Macro F1 where both classes are present; else the share classified right (macro F1
    there falls from 1 to about 0.5 at the first false alarm)."""
    if 0 < y.sum() < len(y):
        return float(f1_score(y, predicted, average="macro", zero_division=0))
    return float((predicted == y).mean())


def validation_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The cut with the best macro F1 on validation rows (accuracy if they hold one class
    only); ties go to the cut nearest 0.5."""
    if not len(y):
        return 0.5
    best, best_value = 0.5, -1.0
    for t in sorted(_CANDIDATE_THRESHOLDS, key=lambda c: abs(c - 0.5)):
        value = _quality(y, (scores >= t).astype(int))
        if value > best_value + 1e-9:
            best, best_value = float(t), value
    return best
