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
) -> dict[str, GateResult]:
    """One result per gate rule, keyed by the rule's name. `challenger` and `champion` are test-set metrics (see
    nids_core.model.metrics.evaluate) on the same test rows; `champion` is None before the first
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
    return {r.name: r for r in results}


# On networks it has never seen, the served model's worst network may be this much below
# the baseline's worst (its mean may not be below the baseline's at all).
MAX_WORST_SHORTFALL = 0.02


def lono_rule(lono: dict | None) -> GateResult:
    """On leave-one-network-out folds, the served model (mean over networks and seeds) must
    not be below the flow-only baseline on the same folds and seeds, and its worst network
    not more than MAX_WORST_SHORTFALL below the baseline's worst. The value is the margin
    of the tighter of the two (>= 0 passes)."""
    if not lono:
        return GateResult(
            "lono_vs_baseline",
            True,
            math.nan,
            math.nan,
            "not measurable: the training set has fewer than two networks with attacks",
        )
    served, base = lono["summary"]["served"], lono["summary"]["baseline"]
    mean_margin = served["mean"] - base["mean"]
    worst_margin = served["worst"] - (base["worst"] - MAX_WORST_SHORTFALL)
    margin = min(mean_margin, worst_margin)
    others = ", ".join(
        f"{c} {lono['summary'][c]['mean']:.4f}"
        for c in lono["summary"]
        if c not in ("served", "baseline")
    )
    selected = lono.get("selected")
    return GateResult(
        "lono_vs_baseline",
        _ok(margin) and margin >= 0,
        margin,
        0.0,
        f"leave-one-network-out macro F1 over {len(lono['networks'])} networks: served "
        f"{served['mean']:.4f} (worst {served['worst']:.4f}, seed sd {served['seed_sd']:.4f}, "
        f"mean over kinds {served['kind_mean']:.4f}, highest benign FPR "
        f"{served['max_benign_fpr']:.4f}) against the flow-only baseline's {base['mean']:.4f} "
        f"(worst {base['worst']:.4f}): the mean must not be below it and the worst not more "
        f"than {MAX_WORST_SHORTFALL} below; serving {selected} at cut "
        f"{lono.get('selected_cut', math.nan):.2f}"
        + (
            " (a simpler candidate than the graph model won on held-out networks)"
            if selected in ("flow_trees", "context_trees")
            else ""
        )
        + f"; candidates: {others}",
    )
