"""PNG figures for the model report: confusion matrix and precision-recall curves."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import precision_recall_curve


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def confusion_matrix_png(confusion: list[list[int]], title: str) -> bytes:
    cm = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(4, 3.5))
    ax.imshow(cm, cmap="Blues")
    for (i, j), v in np.ndenumerate(cm):
        ax.text(j, i, f"{v:,}", ha="center", va="center", color="black")
    ax.set_xticks([0, 1], ["benign", "attack"])
    ax.set_yticks([0, 1], ["benign", "attack"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _png(fig)


def pr_curve_png(y_true: np.ndarray, scores: dict[str, np.ndarray], title: str) -> bytes:
    fig, ax = plt.subplots(figsize=(5, 4))
    if y_true.sum() > 0:
        for name, score in scores.items():
            precision, recall, _ = precision_recall_curve(y_true, score)
            ax.plot(recall, precision, label=name)
        ax.legend(loc="lower left")
    else:
        ax.text(0.5, 0.5, "no attacks in the test set", ha="center")
    ax.set_xlabel("recall (attack)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.set_title(title)
    return _png(fig)
