"""Leave-one-capture-out evaluation: how the model does on a network it has never seen.

For every capture (network) with attacks: train on all the other captures (split by time
into train and validation within each) and test on the whole held-out capture, for the GNN
and for the flow-only baseline on the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from nids_core.baseline import BASELINE_THRESHOLD, baseline_scores, train_baseline
from nids_core.features import attack_labels
from nids_core.metrics import evaluate
from nids_core.splits import time_split
from nids_core.training import TrainConfig, train_gnn


@dataclass
class LocoResult:
    per_capture: dict[str, dict[str, dict]] = field(default_factory=dict)

    def mean_macro_f1(self, model: str) -> float:
        values = [v[model]["macro_f1"] for v in self.per_capture.values()]
        return float(np.mean(values)) if values else float("nan")


def captures_with_attacks(flows: pl.DataFrame) -> list[str]:
    if "capture" not in flows.columns:
        return []
    return (
        flows.filter(pl.col("capture").is_not_null())
        .group_by("capture")
        .agg((pl.col("label") == "malicious").sum().alias("attacks"))
        .filter(pl.col("attacks") > 0)["capture"]
        .sort()
        .to_list()
    )


def leave_one_capture_out(
    flows: pl.DataFrame,
    config: TrainConfig,
    validation: float = 0.15,
    on_capture: Callable[[str, dict[str, dict]], None] | None = None,
) -> LocoResult:
    """Labelled flows with a `capture` column; needs at least two captures."""
    result = LocoResult()
    if flows["capture"].n_unique() < 2:
        return result
    for held_out in captures_with_attacks(flows):
        rest = time_split(flows.filter(pl.col("capture") != held_out), validation, test=0.0)
        train = rest.filter(pl.col("split") == "train")
        val = rest.filter(pl.col("split") == "validation")
        test = flows.filter(pl.col("capture") == held_out)
        if train.height == 0 or val.height == 0:
            continue
        trained = train_gnn(train, val, config)
        scorer = trained.scorer
        base = train_baseline(pl.concat([train, val]), scorer.spec, config.seed)
        y = attack_labels(test)
        metrics = {
            "gnn": evaluate(y, scorer.score(test), scorer.threshold),
            "baseline": evaluate(y, baseline_scores(base, test, scorer.spec), BASELINE_THRESHOLD),
        }
        result.per_capture[held_out] = metrics
        if on_capture:
            on_capture(held_out, metrics)
    return result
