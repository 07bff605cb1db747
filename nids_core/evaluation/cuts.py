"""The served cut, chosen on networks held out from training, never on the validation rows
of the networks trained on (their scores say little about a network never seen)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CANDIDATE_CUTS = np.round(np.arange(0.02, 0.99, 0.02), 2)


def macro_f1_at(y: np.ndarray, score: np.ndarray, cuts: np.ndarray = CANDIDATE_CUTS) -> np.ndarray:
    """Macro F1 (as sklearn's f1_score(average="macro") on both classes) of `score >= cut`
    for every cut at once."""
    y = np.asarray(y).astype(bool)
    score = np.asarray(score, dtype=np.float64)
    attack, benign = np.sort(score[y]), np.sort(score[~y])
    tp = len(attack) - np.searchsorted(attack, cuts, side="left")
    fp = len(benign) - np.searchsorted(benign, cuts, side="left")
    fn, tn = len(attack) - tp, len(benign) - fp

    def f1(hit: np.ndarray, wrong: np.ndarray) -> np.ndarray:
        denominator = 2 * hit + wrong
        return np.where(denominator > 0, 2 * hit / np.maximum(denominator, 1), 0.0)

    return 0.5 * (f1(tp, fp + fn) + f1(tn, fp + fn))


def best_cut(folds: Sequence[tuple[np.ndarray, np.ndarray]]) -> float:
    """The cut with the best mean macro F1 over `folds` ((labels, scores) of held-out
    networks, each weighing the same whatever its size); ties go to the cut nearest 0.5,
    and with no fold the cut is 0.5."""
    return float(CANDIDATE_CUTS[best_cut_index([macro_f1_at(y, s) for y, s in folds])])


def best_cut_index(curves: Sequence[np.ndarray]) -> int:
    """best_cut's index into CANDIDATE_CUTS, from the folds' macro_f1_at curves."""
    if not len(curves):
        return int(np.argmin(np.abs(CANDIDATE_CUTS - 0.5)))
    mean = np.mean(curves, axis=0)
    order = np.argsort(np.abs(CANDIDATE_CUTS - 0.5), kind="stable")
    return int(order[np.argmax(mean[order] > mean.max() - 1e-9)])
