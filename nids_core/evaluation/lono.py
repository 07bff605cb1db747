"""Leave one network out, with seeds: how a model does on a network it has never seen.

The unit is the network (capture), not the row. For every network with attacks, each
candidate is fitted on all the other networks (split by time into train and validation
within each) with each seed, and tested on the whole held-out network: the served model,
the graph model alone and the flow-only baseline, on the same rows. Thresholds are chosen
on the training networks' validation rows, never on the held-out network.
Networks without attacks always train (their macro F1 alone would say little).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from nids_core.evaluation.metrics import evaluate
from nids_core.model.baseline import BASELINE_THRESHOLD, baseline_scores, train_baseline
from nids_core.model.features import attack_labels
from nids_core.model.gnn import graph_model_parts
from nids_core.model.splits import time_split
from nids_core.model.training import TrainConfig, train_served

CANDIDATES = ("served", "gnn", "baseline")


@dataclass
class LonoResult:
    # network -> seed -> candidate -> metrics (nids_core.evaluation.metrics.evaluate)
    runs: dict[str, dict[int, dict[str, dict]]] = field(default_factory=dict)

    @property
    def networks(self) -> list[str]:
        return sorted(self.runs)

    def per_network(self, candidate: str) -> dict[str, float]:
        """Mean macro F1 over seeds, per held-out network."""
        return {
            n: float(np.mean([m[candidate]["macro_f1"] for m in seeds.values()]))
            for n, seeds in sorted(self.runs.items())
        }

    def summary(self, candidate: str) -> dict[str, float]:
        """mean (over networks and seeds), worst network (its mean over seeds) and seed_sd
        (standard deviation over seeds of the mean over networks)."""
        if not self.runs:
            return {"mean": math.nan, "worst": math.nan, "seed_sd": math.nan}
        per = self.per_network(candidate)
        seeds = sorted({s for by_seed in self.runs.values() for s in by_seed})
        per_seed = [
            np.mean(
                [self.runs[n][s][candidate]["macro_f1"] for n in self.runs if s in self.runs[n]]
            )
            for s in seeds
        ]
        return {
            "mean": float(np.mean(list(per.values()))),
            "worst": float(min(per.values())),
            "seed_sd": float(np.std(per_seed)) if len(per_seed) > 1 else 0.0,
        }

    def as_dict(self) -> dict:
        return {
            "networks": self.networks,
            "summary": {c: self.summary(c) for c in CANDIDATES},
            "per_network": {c: self.per_network(c) for c in CANDIDATES},
            "runs": {
                n: {
                    str(s): {
                        c: {
                            k: m[c][k]
                            for k in ("flows", "attacks", "macro_f1", "attack_recall", "benign_fpr")
                        }
                        for c in CANDIDATES
                    }
                    for s, m in by_seed.items()
                }
                for n, by_seed in self.runs.items()
            },
        }


def networks_with_attacks(flows: pl.DataFrame) -> list[str]:
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


def leave_one_network_out(
    flows: pl.DataFrame,
    config: TrainConfig,
    seeds: Sequence[int] = (0, 1, 2),
    validation: float = 0.15,
    on_run: Callable[[str, int, dict[str, dict]], None] | None = None,
) -> LonoResult:
    """Labelled flows with a `capture` column; empty without two networks."""
    result = LonoResult()
    if "capture" not in flows.columns or flows["capture"].n_unique() < 2:
        return result
    for held_out in networks_with_attacks(flows):
        rest = time_split(flows.filter(pl.col("capture") != held_out), validation, test=0.0)
        train = rest.filter(pl.col("split") == "train")
        val = rest.filter(pl.col("split") == "validation")
        test = flows.filter(pl.col("capture") == held_out)
        if train.height == 0 or val.height == 0 or attack_labels(train).sum() == 0:
            continue
        y = attack_labels(test)
        for seed in seeds:
            served = train_served(train, val, replace(config, seed=seed)).scorer
            spec = served.spec
            gnn_score, gnn_threshold = graph_model_parts(served)
            metrics = {
                "served": evaluate(y, served.score(test), served.threshold),
                "gnn": evaluate(y, gnn_score(test), gnn_threshold),
            }
            base = train_baseline(pl.concat([train, val]), spec, seed)
            metrics["baseline"] = evaluate(y, baseline_scores(base, test, spec), BASELINE_THRESHOLD)
            result.runs.setdefault(held_out, {})[seed] = metrics
            if on_run:
                on_run(held_out, seed, metrics)
    return result
