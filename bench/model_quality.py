"""Model quality on the real IoT-23 captures: the served model and the graph model (GNN)
alone beside a flow-only baseline.

Time split per capture: the first 70% of each capture's flows by time train (60%) and
validate (10%), the last 30% test. Prints a table per capture and overall for the three
(macro F1, attack recall, benign FPR, PR-AUC, accuracy), the training time per epoch for
50,000 flows on this machine's CPU, a `served:` line, and the contract line:
`quality: gnn macro_f1=<x> benign_fpr=<y>; baseline macro_f1=<z> benign_fpr=<w>`.

With `--lono`, then leave one network out (every capture with attacks held out in turn,
each with every seed of `--seeds`, default 0,1,2): a row per network, seed and model, the
mean per network, and the contract line
`generalization: served lono_macro_f1=<x> worst=<w> seed_sd=<s>; baseline lono_macro_f1=<z> worst=<v>`
(mean over networks and seeds; worst network by its mean over seeds; standard deviation
over seeds of the mean over networks).
"""

import argparse
import math
import sys
import time

import numpy as np
import polars as pl
import torch

from nids_core.evaluation.lono import CANDIDATES, LonoResult, leave_one_network_out
from nids_core.evaluation.metrics import evaluate, evaluate_by_capture
from nids_core.model.baseline import BASELINE_THRESHOLD, baseline_scores, train_baseline
from nids_core.model.features import attack_labels
from nids_core.model.gnn import graph_model_parts
from nids_core.model.splits import time_split
from nids_core.model.training import TrainConfig, train_gnn, train_served
from nids_core.training_data.data_dir import find_data_dir, iot23_files
from nids_core.zeek.files import read_zeek_file

COLUMNS = ("macro_f1", "attack_recall", "benign_fpr", "pr_auc", "accuracy")


def load_captures() -> pl.DataFrame:
    files = iot23_files(find_data_dir())
    if not files:
        sys.exit("no IoT-23 captures in the data directory (see `nids data download`)")
    frames = [read_zeek_file(f).flows for f in files]
    return pl.concat(frames).filter(pl.col("label").is_not_null())


def fmt(v: float) -> str:
    return "   -  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.4f}"


def print_table(title: str, rows: list[tuple[str, dict]]):
    print(f"\n{title}")
    head = " ".join(f"{c:>13s}" for c in COLUMNS)
    print(f"{'capture':32s} {'flows':>6s} {'attacks':>7s} model    {head}")
    for name, by_model in rows:
        for label, m in by_model.items():
            cells = " ".join(f"{fmt(m[c]):>13s}" for c in COLUMNS)
            print(f"{name:32s} {m['flows']:6d} {m['attacks']:7d} {label:8s} {cells}")


def per_capture(test: pl.DataFrame, scores: dict) -> list[tuple[str, dict]]:
    """(capture, {model: metrics}) rows, then the overall row."""
    y = attack_labels(test)
    rows = list(evaluate_by_capture(test, y, scores).items())
    overall = {model: evaluate(y, score, t) for model, (score, t) in scores.items()}
    return [*rows, ("overall", overall)]


def fit_and_score(train, validation, test, config):
    t0 = time.perf_counter()
    result = train_served(train, validation, config)
    served_s = time.perf_counter() - t0
    scorer = result.scorer
    gnn_score, gnn_threshold = graph_model_parts(scorer)
    t0 = time.perf_counter()
    base = train_baseline(pl.concat([train, validation]), scorer.spec, config.seed)
    base_s = time.perf_counter() - t0
    scores = {
        "served": (scorer.score(test), scorer.threshold),
        "gnn": (gnn_score(test), gnn_threshold),
        "baseline": (baseline_scores(base, test, scorer.spec), BASELINE_THRESHOLD),
    }
    return result, scores, (served_s, base_s)


def epoch_time_50k(flows: pl.DataFrame, config: TrainConfig) -> float:
    """Seconds per training epoch (forward, backward, step) on a 50,000-flow graph."""
    sample = flows.sort(["capture", "ts"]).head(50_000)
    if sample.height < 50_000:  # the captures hold ~46k flows: repeat with fresh uids
        reps = -(-50_000 // sample.height)
        sample = pl.concat(
            [sample.with_columns(pl.col("uid") + f"-{i}") for i in range(reps)]
        ).head(50_000)
    timing = TrainConfig(**{**config.__dict__, "max_epochs": 5, "patience": 100})
    result = train_gnn(sample, sample.head(1000), timing)
    return result.seconds_per_epoch


def lono(captures: pl.DataFrame, config: TrainConfig, seeds: list[int]) -> LonoResult:
    """Leave one network out (nids_core.evaluation.lono): a row per held-out network, seed and model."""
    print(
        f"\nleave-one-network-out: train on the other captures, test on the held-out one; "
        f"seeds {seeds}"
    )
    head = " ".join(f"{c:>13s}" for c in COLUMNS)
    print(f"{'held-out network':32s} {'seed':>4s} {'flows':>6s} {'attacks':>7s} model    {head}")

    def show(held_out: str, seed: int, metrics: dict) -> None:
        for label, m in metrics.items():
            cells = " ".join(f"{fmt(m[c]):>13s}" for c in COLUMNS)
            print(
                f"{held_out:32s} {seed:4d} {m['flows']:6d} {m['attacks']:7d} {label:8s} {cells}",
                flush=True,
            )

    result = leave_one_network_out(captures, config, seeds, on_run=show)
    print("\nmacro F1 per held-out network, mean over seeds:")
    print(f"{'network':32s} " + " ".join(f"{c:>9s}" for c in CANDIDATES))
    per = {c: result.per_network(c) for c in CANDIDATES}
    for network in result.networks:
        print(f"{network:32s} " + " ".join(f"{per[c][network]:9.4f}" for c in CANDIDATES))
    for key in ("mean", "worst", "seed_sd"):
        summary = {c: result.summary(c)[key] for c in CANDIDATES}
        print(f"{key:32s} " + " ".join(f"{summary[c]:9.4f}" for c in CANDIDATES))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument(
        "--lono",
        action="store_true",
        help="also leave-one-network-out with seeds (the last line then reports it)",
    )
    ap.add_argument("--seeds", default="0,1,2", help="seeds per held-out network (--lono)")
    ap.add_argument("--max-epochs", type=int, default=None, help="fewer epochs (quick runs)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(seed=args.seed)
    if args.max_epochs:
        config = TrainConfig(seed=args.seed, max_epochs=args.max_epochs)
    captures = load_captures()
    flows = time_split(captures)
    train, validation, test = (flows.filter(pl.col("split") == s) for s in SPLIT_NAMES)
    print(
        f"IoT-23: {flows.height} labelled flows in {flows['capture'].n_unique()} captures; "
        f"train {train.height}, validation {validation.height}, test {test.height} (by time)"
    )
    result, scores, seconds = fit_and_score(train, validation, test, config)
    print(
        f"gnn: best epoch {result.best_epoch} of {result.epochs_run}, "
        f"{result.seconds_per_epoch * 1000:.0f} ms/epoch on {train.height} flows; served "
        f"threshold {result.scorer.threshold:.2f} (chosen on the validation rows)"
    )
    rows = per_capture(test, scores)
    print_table("time split: last 30% of each capture", rows)
    print(f"training seconds: served (gnn + trees) {seconds[0]:.1f}, baseline {seconds[1]:.1f}")
    per_epoch = epoch_time_50k(flows, config)
    print(
        f"\ntraining time per epoch, 50,000 flows, CPU ({torch.get_num_threads()} threads): "
        f"{per_epoch:.3f} s"
    )
    overall = rows[-1][1]
    served, gnn, base = overall["served"], overall["gnn"], overall["baseline"]
    print(f"served: macro_f1={served['macro_f1']:.4f} benign_fpr={served['benign_fpr']:.4f}")
    print(
        f"quality: gnn macro_f1={gnn['macro_f1']:.4f} benign_fpr={gnn['benign_fpr']:.4f}; "
        f"baseline macro_f1={base['macro_f1']:.4f} benign_fpr={base['benign_fpr']:.4f}"
    )
    if args.lono:
        seeds = [int(s) for s in args.seeds.split(",")]
        if len(seeds) < 3:
            sys.exit("--lono needs at least 3 seeds")
        result = lono(captures, config, seeds)
        s, b = result.summary("served"), result.summary("baseline")
        print(
            f"generalization: served lono_macro_f1={s['mean']:.4f} worst={s['worst']:.4f} "
            f"seed_sd={s['seed_sd']:.4f}; baseline lono_macro_f1={b['mean']:.4f} "
            f"worst={b['worst']:.4f}"
        )


SPLIT_NAMES = ("train", "validation", "test")

if __name__ == "__main__":
    np.set_printoptions(suppress=True)
    main()
