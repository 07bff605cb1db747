"""Leave one network out, with seeds: how each candidate does on a network it has never
seen, the cut each is served at, and which one is served.

The unit is the network, not the row. For every network with attacks, the parts of every
candidate (nids_core.model.candidates: the graph model, the context trees, the flow-only
trees) are fitted on all the other networks (split by time into train and validation
within each; validation rows only stop the graph model's training) with each seed, and
score the whole held-out network. Networks without attacks always train (their macro F1
alone would say little).

Nothing reported for a network is chosen on that network's labels:
- the cut of a candidate on held-out network k is chosen on the other held-out networks'
  scores of the same seed (cross-fitted; for the final model, on all of them): the cut
  with the best mean macro F1 over them (nids_core.evaluation.cuts);
- `served` on network k is chosen on the other networks, each scored at a cut chosen
  without k either: the simplest candidate, unless a more complex one is better by more
  than twice the seed spread (and SIMPLER_WITHIN);
- `baseline` is the flow-only trees at the plain 0.5 cut, the reference every candidate
  must not lose to.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl

from nids_core.evaluation.cuts import CANDIDATE_CUTS, best_cut_index, macro_f1_at
from nids_core.model.baseline import BASELINE_THRESHOLD, baseline_scores, train_baseline
from nids_core.model.candidates import SERVABLE, SIMPLER_WITHIN, candidate_name, fold_candidates
from nids_core.model.features import attack_labels
from nids_core.model.metrics import alarms_per_host_day, benign_hosts_and_days, evaluate
from nids_core.model.served import fit_forest, forest_scores
from nids_core.model.splits import time_split
from nids_core.model.training import TrainConfig, train_gnn
from nids_core.training_data.networks import NETWORK_KIND_COLUMN

CANDIDATES = ("served", *SERVABLE, "baseline")
RUN_KEYS = (
    "flows",
    "attacks",
    "cut",
    "macro_f1",
    "attack_recall",
    "benign_fpr",
    "roc_auc",
    "pr_auc",
    "alarms_per_host_day",
)


@dataclass
class FoldScores:
    """One held-out network and seed: its labels and every candidate's scores."""

    network: str
    kind: str
    seed: int
    y: np.ndarray
    scores: dict[str, np.ndarray]
    benign_hosts: int = 0  # distinct originators of its benign flows
    days: float = 1.0  # its span in days (at least one)


def _choose(per_seed: dict[str, list[float]]) -> str:
    """From each candidate's mean macro F1 over held-out networks, one value per seed: the
    simplest candidate, replaced by a more complex one (SERVABLE is simplest first) only
    when that one's mean over seeds is higher by more than twice their pooled seed spread,
    and at least SIMPLER_WITHIN (a gain inside the seed spread is noise)."""
    chosen = SERVABLE[0]
    for candidate in SERVABLE[1:]:
        a, b = np.asarray(per_seed[chosen]), np.asarray(per_seed[candidate])
        spread = math.sqrt((a.var() + b.var()) / 2)
        if b.mean() - a.mean() > max(SIMPLER_WITHIN, 2 * spread):
            chosen = candidate
    return chosen


@dataclass
class LonoResult:
    folds: list[FoldScores] = field(default_factory=list)
    # What `served` is when it is not chosen: a candidate's name, or "auto".
    serve: str = "auto"
    # network -> seed -> candidate -> metrics (with the cut used), filled by finish()
    runs: dict[str, dict[int, dict[str, dict]]] = field(default_factory=dict)
    chosen: dict[str, dict[int, str]] = field(default_factory=dict)  # served, per fold
    kinds: dict[str, str] = field(default_factory=dict)
    selected: str | None = None  # what the final model serves
    selected_cut: float = 0.5  # at this cut
    final_cuts: dict[str, float] = field(default_factory=dict)
    candidate_means: dict[str, float] = field(default_factory=dict)
    _curves: dict = field(default_factory=dict, repr=False)

    @property
    def networks(self) -> list[str]:
        return sorted(self.runs)

    def _others(self, seed: int, without: set[str]) -> list[FoldScores]:
        return [f for f in self.folds if f.seed == seed and f.network not in without]

    def _curve(self, fold: FoldScores, candidate: str) -> np.ndarray:
        """The fold's macro F1 at every candidate cut (computed once)."""
        key = (fold.network, fold.seed, candidate)
        if key not in self._curves:
            self._curves[key] = macro_f1_at(fold.y, fold.scores[candidate])
        return self._curves[key]

    def _cut_index(self, candidate: str, folds: list[FoldScores]) -> int:
        return best_cut_index([self._curve(f, candidate) for f in folds])

    def _cut(self, candidate: str, seed: int, without: set[str]) -> float:
        return float(CANDIDATE_CUTS[self._cut_index(candidate, self._others(seed, without))])

    def finish(self) -> LonoResult:
        """Cross-fitted cuts, metrics per fold and candidate, the served choice per fold,
        and the final model's candidate and cut."""
        self.runs, self.chosen, self._curves = {}, {}, {}
        choices: dict[str, str] = {}
        self.kinds = {f.network: f.kind for f in self.folds}
        for fold in self.folds:
            metrics = {}
            for c in SERVABLE:
                cut = self._cut(c, fold.seed, {fold.network})
                metrics[c] = self._metrics(fold, fold.scores[c], cut)
            metrics["baseline"] = self._metrics(fold, fold.scores["flow_trees"], BASELINE_THRESHOLD)
            if self.serve == "auto":
                if fold.network not in choices:
                    choices[fold.network] = self._choose_without(fold.network)
                choice = choices[fold.network]
            else:
                choice = self.serve
            metrics["served"] = {**metrics[choice], "candidate": choice}
            self.runs.setdefault(fold.network, {})[fold.seed] = metrics
            self.chosen.setdefault(fold.network, {})[fold.seed] = choice
        if self.folds:
            self.final_cuts = {
                c: float(CANDIDATE_CUTS[self._cut_index(c, self.folds)]) for c in SERVABLE
            }
            self.candidate_means = {c: self.summary(c)["mean"] for c in SERVABLE}
            self.selected = (
                _choose({c: self._per_seed_means(c) for c in SERVABLE})
                if self.serve == "auto"
                else self.serve
            )
            self.selected_cut = self.final_cuts[self.selected]
        return self

    def _seeds(self) -> list[int]:
        return sorted({f.seed for f in self.folds})

    def _per_seed_means(self, candidate: str) -> list[float]:
        """The candidate's mean macro F1 over held-out networks (each at its cross-fitted
        cut), one value per seed."""
        return [
            float(
                np.mean(
                    [
                        m[candidate]["macro_f1"]
                        for m in (by[s] for by in self.runs.values() if s in by)
                    ]
                )
            )
            for s in self._seeds()
        ]

    def _choose_without(self, network: str) -> str:
        """What is served on `network`, chosen on the other networks alone: each candidate's
        mean macro F1 over them per seed, each scored at a cut chosen without `network`
        and without itself."""
        per_seed = {}
        for c in SERVABLE:
            per_seed[c] = []
            for seed in self._seeds():
                others = self._others(seed, {network})
                per_seed[c].append(
                    float(
                        np.mean(
                            [
                                self._curve(o, c)[
                                    self._cut_index(c, self._others(seed, {network, o.network}))
                                ]
                                for o in others
                            ]
                        )
                    )
                    if others
                    else 0.0
                )
        return _choose(per_seed)

    @staticmethod
    def _metrics(fold: FoldScores, score: np.ndarray, cut: float) -> dict:
        m = evaluate(fold.y, score, cut)
        return {
            **m,
            "cut": cut,
            "alarms_per_host_day": alarms_per_host_day(m, fold.benign_hosts, fold.days),
        }

    def per_network(self, candidate: str, key: str = "macro_f1") -> dict[str, float]:
        """Mean over seeds, per held-out network."""
        return {
            n: float(np.mean([m[candidate][key] for m in seeds.values()]))
            for n, seeds in sorted(self.runs.items())
        }

    def summary(self, candidate: str) -> dict[str, float]:
        """mean (over networks and seeds), worst network (its mean over seeds), seed_sd
        (standard deviation over seeds of the mean over networks), kind_mean (the mean over
        kinds of network of the mean over each kind's networks), max_benign_fpr (the
        highest benign FPR of a held-out network, mean over seeds)."""
        if not self.runs:
            return dict.fromkeys(
                (
                    "mean",
                    "worst",
                    "seed_sd",
                    "kind_mean",
                    "max_benign_fpr",
                    "max_alarms_per_host_day",
                ),
                math.nan,
            )
        per = self.per_network(candidate)
        seeds = sorted({s for by_seed in self.runs.values() for s in by_seed})
        per_seed = [
            np.mean(
                [self.runs[n][s][candidate]["macro_f1"] for n in self.runs if s in self.runs[n]]
            )
            for s in seeds
        ]
        by_kind: dict[str, list[float]] = {}
        for network, value in per.items():
            by_kind.setdefault(self.kinds.get(network, network), []).append(value)
        fpr = [v for v in self.per_network(candidate, "benign_fpr").values() if v == v]
        alarms = self.per_network(candidate, "alarms_per_host_day")
        return {
            "mean": float(np.mean(list(per.values()))),
            "worst": float(min(per.values())),
            "seed_sd": float(np.std(per_seed)) if len(per_seed) > 1 else 0.0,
            "kind_mean": float(np.mean([np.mean(v) for v in by_kind.values()])),
            "max_benign_fpr": float(max(fpr)) if fpr else math.nan,
            "max_alarms_per_host_day": float(max(alarms.values())),
        }

    def as_dict(self) -> dict:
        return {
            "networks": self.networks,
            "kinds": self.kinds,
            "selected": self.selected,
            "selected_cut": self.selected_cut,
            "final_cuts": self.final_cuts,
            "serve": self.serve,
            "summary": {c: self.summary(c) for c in CANDIDATES},
            "per_network": {c: self.per_network(c) for c in CANDIDATES},
            "benign_fpr": {c: self.per_network(c, "benign_fpr") for c in CANDIDATES},
            "chosen": {n: {str(s): c for s, c in by.items()} for n, by in self.chosen.items()},
            "runs": {
                n: {
                    str(s): {c: {k: m[c][k] for k in RUN_KEYS} for c in CANDIDATES}
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


def score_fold(
    train: pl.DataFrame, validation: pl.DataFrame, test: pl.DataFrame, config: TrainConfig
) -> dict[str, np.ndarray]:
    """Every candidate's scores on `test`, its parts fitted on `train` (and `validation`:
    the graph model stops on it, the trees fit on both)."""
    gnn = train_gnn(train, validation, config).scorer
    rows = pl.concat([train, validation], how="vertical_relaxed")
    context = fit_forest(rows, gnn.spec, config.window, config.seed)
    flow_only = train_baseline(rows, gnn.spec, config.seed)
    return fold_candidates(
        gnn.score(test),
        forest_scores(context, test, gnn.spec, config.window),
        baseline_scores(flow_only, test, gnn.spec),
    )


def leave_one_network_out(
    flows: pl.DataFrame,
    config: TrainConfig,
    seeds: Sequence[int] = (0, 1, 2),
    validation: float = 0.15,
    on_run: Callable[[str, int, dict[str, np.ndarray], np.ndarray], None] | None = None,
) -> LonoResult:
    """Labelled flows with a `capture` column (and `network_kind`, else each network is
    its own kind); empty without two networks. `on_run(network, seed, scores, y)` after
    each fold."""
    result = LonoResult(serve=candidate_name(config.serve))
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
        kind = test[NETWORK_KIND_COLUMN][0] if NETWORK_KIND_COLUMN in test.columns else held_out
        benign_hosts, days = benign_hosts_and_days(test, y)
        for seed in seeds:
            scores = score_fold(train, val, test, replace(config, seed=seed))
            result.folds.append(FoldScores(held_out, kind, seed, y, scores, benign_hosts, days))
            if on_run:
                on_run(held_out, seed, scores, y)
    return result.finish()
