"""Detection metrics that accuracy alone would hide: macro F1, attack recall, benign
false-positive rate, PR-AUC, accuracy and the confusion matrix (attack = positive)."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
from sklearn.metrics import average_precision_score, confusion_matrix, f1_score, roc_auc_score


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
        # Whether the ranking holds, whatever the cut: NaN unless both classes are there.
        "roc_auc": float(roc_auc_score(y_true, score)) if attacks and benign else math.nan,
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


def benign_hosts_and_days(flows: pl.DataFrame, y_true: np.ndarray) -> tuple[int, float]:
    """Distinct originators of the benign flows, and the flows' span in days (at least
    one): what false alarms per benign host-day are counted over."""
    benign = flows.filter(pl.Series(np.asarray(y_true) == 0))
    hosts = benign["orig_h"].n_unique() if benign.height else 0
    span = (flows["ts"].max() - flows["ts"].min()).total_seconds() if flows.height else 0
    return hosts, max(span / 86400, 1.0)


def alarms_per_host_day(metrics: dict, hosts: int, days: float) -> float:
    """False alarms (benign flows at or above the cut) per benign host and day."""
    return metrics["confusion"][0][1] / max(hosts, 1) / days
