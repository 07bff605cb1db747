"""The promotion gate: absolute thresholds on the time split, no regression against the
champion, and on networks the model has never seen no worse than the flow-only baseline."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class GateThresholds:
    min_accuracy: float = 0.95
    min_macro_f1: float = 0.95
    max_benign_fpr: float = 0.01
    max_macro_f1_drop: float = 0.005


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    value: float
    threshold: float
    detail: str


def _ok(value: float) -> bool:
    return value is not None and not math.isnan(value)


def evaluate_gate(
    challenger: dict,
    champion: dict | None,
    thresholds: GateThresholds,
    champion_problem: str | None = None,
    lono: dict | None = None,
) -> list[GateResult]:
    """One result per gate rule. `challenger` and `champion` are test-set metrics (see
    nids_core.evaluation.metrics.evaluate) on the same test rows; `champion` is None before the first
    promotion, or when the champion could not be loaded (`champion_problem` says why), when
    only the absolute thresholds apply. `lono` is nids_core.evaluation.lono.LonoResult.as_dict(), None
    when the training set cannot measure it."""
    acc, f1, fpr = challenger["accuracy"], challenger["macro_f1"], challenger["benign_fpr"]
    results = [
        GateResult(
            "test_accuracy",
            _ok(acc) and acc >= thresholds.min_accuracy,
            acc,
            thresholds.min_accuracy,
            f"accuracy {acc:.4f} >= {thresholds.min_accuracy}",
        ),
        GateResult(
            "macro_f1",
            _ok(f1) and f1 >= thresholds.min_macro_f1,
            f1,
            thresholds.min_macro_f1,
            f"macro F1 {f1:.4f} >= {thresholds.min_macro_f1}",
        ),
        GateResult(
            "benign_fpr",
            # No benign flow in the test set means the rate cannot be measured: fail.
            _ok(fpr) and fpr <= thresholds.max_benign_fpr,
            fpr,
            thresholds.max_benign_fpr,
            f"benign false-positive rate {fpr:.4f} <= {thresholds.max_benign_fpr}",
        ),
    ]
    if champion is None:
        results.append(
            GateResult(
                "not_worse_than_champion",
                True,
                math.nan,
                thresholds.max_macro_f1_drop,
                f"{champion_problem}; judged on the absolute thresholds"
                if champion_problem
                else "no champion yet: the first model is judged on the absolute thresholds",
            )
        )
    else:
        drop = champion["macro_f1"] - f1
        results.append(
            GateResult(
                "not_worse_than_champion",
                _ok(drop) and drop <= thresholds.max_macro_f1_drop,
                drop,
                thresholds.max_macro_f1_drop,
                f"macro F1 {f1:.4f} vs champion {champion['macro_f1']:.4f}: "
                f"drop {drop:.4f} <= {thresholds.max_macro_f1_drop}",
            )
        )
    results.append(lono_rule(lono))
    return results


def lono_rule(lono: dict | None) -> GateResult:
    """The served model's leave-one-network-out macro F1 (mean over networks and seeds)
    must not be below the flow-only baseline's on the same folds and seeds."""
    if not lono:
        return GateResult(
            "lono_vs_baseline",
            True,
            math.nan,
            math.nan,
            "not measurable: the training set has fewer than two networks with attacks",
        )
    served, graph, base = (lono["summary"][c] for c in ("served", "gnn", "baseline"))
    return GateResult(
        "lono_vs_baseline",
        _ok(served["mean"]) and served["mean"] >= base["mean"],
        served["mean"],
        base["mean"],
        f"leave-one-network-out macro F1 over {len(lono['networks'])} networks: served "
        f"{served['mean']:.4f} (worst {served['worst']:.4f}, seed sd {served['seed_sd']:.4f}) "
        f"against the flow-only baseline's {base['mean']:.4f} (worst {base['worst']:.4f}), "
        f"which it must not be below; graph model alone {graph['mean']:.4f} "
        f"(worst {graph['worst']:.4f})",
    )
