"""Detection metrics that accuracy alone would hide: macro F1, attack recall, benign
false-positive rate, PR-AUC, accuracy and the confusion matrix (attack = positive)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score


def evaluate(y_true: np.ndarray, score: np.ndarray, threshold: float = 0.5) -> dict:
    """Metrics for one set of flows. PR-AUC is NaN when there is no attack to find."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = (np.asarray(score) >= threshold).astype(np.int64)
    tn, fp, fn, tp = confusion_matrix(y_true, y_pred, labels=[0, 1]).ravel().tolist()
    benign, attacks = tn + fp, tp + fn
    return {
        "flows": len(y_true),
        "attacks": int(attacks),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", zero_division=0))
        if len(y_true)
        else math.nan,
        "attack_recall": tp / attacks if attacks else math.nan,
        "benign_fpr": fp / benign if benign else math.nan,
        "pr_auc": float(average_precision_score(y_true, score)) if attacks else math.nan,
        "accuracy": (tp + tn) / len(y_true) if len(y_true) else math.nan,
        "confusion": [[tn, fp], [fn, tp]],
    }


def evaluate_by_capture(
    flows: pl.DataFrame, y_true: np.ndarray, scores: dict[str, tuple[np.ndarray, float]]
) -> dict[str, dict[str, dict]]:
    """{capture: {model: metrics}} for each model's (scores, threshold); {} without a
    `capture` column. Rows whose capture is unknown are grouped as "(none)"."""
    if "capture" not in flows.columns:
        return {}
    captures = flows["capture"].fill_null("(none)")
    out = {}
    for name in sorted(captures.unique().to_list()):
        mask = (captures == name).to_numpy()
        out[name] = {
            model: evaluate(y_true[mask], score[mask], threshold)
            for model, (score, threshold) in scores.items()
        }
    return out
