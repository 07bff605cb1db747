"""The flow-only baseline: a tree ensemble on the same features and split, no graph."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import ExtraTreesClassifier


def train_baseline(x: np.ndarray, y: np.ndarray, seed: int = 0) -> ExtraTreesClassifier:
    model = ExtraTreesClassifier(
        n_estimators=200,
        min_samples_leaf=1,
        class_weight="balanced",
        n_jobs=-1,
        random_state=seed,
    )
    model.fit(x, y)
    return model


def baseline_scores(model: ExtraTreesClassifier, x: np.ndarray) -> np.ndarray:
    proba = model.predict_proba(x)
    if proba.shape[1] == 1:  # trained on one class only
        return np.full(len(x), float(model.classes_[0]))
    return proba[:, list(model.classes_).index(1)]
