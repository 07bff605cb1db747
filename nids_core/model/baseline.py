"""The flow-only baseline: a tree ensemble on the same features and split, no graph."""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.ensemble import ExtraTreesClassifier

from nids_core.model.features import FeatureSpec, attack_labels, transform

BASELINE_THRESHOLD = 0.5


def train_baseline(flows: pl.DataFrame, spec: FeatureSpec, seed: int = 0) -> ExtraTreesClassifier:
    """Fit on labelled flows, with the GNN's fitted feature spec (same features, no graph)."""
    model = ExtraTreesClassifier(
        n_estimators=200,
        min_samples_leaf=1,
        class_weight="balanced",
        n_jobs=-1,
        random_state=seed,
    )
    model.fit(transform(flows, spec), attack_labels(flows))
    return model


def baseline_scores(
    model: ExtraTreesClassifier, flows: pl.DataFrame, spec: FeatureSpec
) -> np.ndarray:
    """Attack probability per flow."""
    proba = model.predict_proba(transform(flows, spec))
    if proba.shape[1] == 1:  # trained on one class only
        return np.full(flows.height, float(model.classes_[0]))
    return proba[:, list(model.classes_).index(1)]
