"""Model quality on the real IoT-23 captures: the GNN beside a flow-only baseline.

Time split per capture: the first 70% of each capture's flows by time train (60%) and
validate (10%), the last 30% test. Prints a table per capture and overall for both models
(macro F1, attack recall, benign FPR, PR-AUC, accuracy, training seconds), the training
time per epoch for 50,000 flows on this machine's CPU, and ends with the contract line:
`quality: gnn macro_f1=<x> benign_fpr=<y>; baseline macro_f1=<z> benign_fpr=<w>`.
"""

import argparse
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import polars as pl
import torch

from nids_core.baseline import BASELINE_THRESHOLD, baseline_scores, train_baseline
from nids_core.data_dir import find_data_dir, iot23_files
from nids_core.features import attack_labels
from nids_core.loco import leave_one_capture_out
from nids_core.metrics import evaluate, evaluate_by_capture
from nids_core.splits import time_split
from nids_core.training import TrainConfig, train_gnn
from nids_core.zeek_files import read_zeek_file

COLUMNS = ("macro_f1", "attack_recall", "benign_fpr", "pr_auc", "accuracy")


def load_captures() -> pl.DataFrame:
    files = iot23_files(find_data_dir())
    if not files:
        sys.exit("no IoT-23 captures in the data directory (see `nids data download`)")
    frames = [read_zeek_file(f).flows for f in files]
    return pl.concat(frames).filter(pl.col("label").is_not_null())


def fmt(v: float) -> str:
    return "   -  " if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:6.4f}"


def print_table(title: str, rows: list[tuple[str, dict, dict]], seconds: tuple[float, float]):
    print(f"\n{title}")
    head = " ".join(f"{c:>13s}" for c in COLUMNS)
    print(f"{'capture':32s} {'flows':>6s} {'attacks':>7s} model    {head}")
    for name, gnn, base in rows:
        for label, m in (("gnn", gnn), ("baseline", base)):
            cells = " ".join(f"{fmt(m[c]):>13s}" for c in COLUMNS)
            print(f"{name:32s} {m['flows']:6d} {m['attacks']:7d} {label:8s} {cells}")
    print(f"training seconds: gnn {seconds[0]:.1f}, baseline {seconds[1]:.1f}")


def per_capture(test: pl.DataFrame, gnn_score, base_score, threshold):
    """(capture, gnn metrics, baseline metrics) rows, then the overall row."""
    y = attack_labels(test)
    scores = {"gnn": (gnn_score, threshold), "baseline": (base_score, BASELINE_THRESHOLD)}
    by_capture = evaluate_by_capture(test, y, scores)
    rows = [(name, m["gnn"], m["baseline"]) for name, m in by_capture.items()]
    overall = {model: evaluate(y, score, t) for model, (score, t) in scores.items()}
    return [*rows, ("overall", overall["gnn"], overall["baseline"])]


def fit_and_score(train, validation, test, config):
    t0 = time.perf_counter()
    result = train_gnn(train, validation, config)
    gnn_s = time.perf_counter() - t0
    scorer = result.scorer
    gnn_score = scorer.score(test)
    t0 = time.perf_counter()
    base = train_baseline(pl.concat([train, validation]), scorer.spec, config.seed)
    base_s = time.perf_counter() - t0
    base_score = baseline_scores(base, test, scorer.spec)
    return result, gnn_score, base_score, (gnn_s, base_s)


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


def loco(captures: pl.DataFrame, config: TrainConfig) -> tuple[float, float]:
    """Leave one capture out (nids_core.loco): a row per held-out capture and model."""
    print("\nleave-one-capture-out: train on the other captures, test on the held-out one")
    head = " ".join(f"{c:>13s}" for c in COLUMNS)
    print(f"{'held-out capture':32s} {'flows':>6s} {'attacks':>7s} model    {head}")

    def show(held_out: str, metrics: dict) -> None:
        for label, m in metrics.items():
            cells = " ".join(f"{fmt(m[c]):>13s}" for c in COLUMNS)
            print(
                f"{held_out:32s} {m['flows']:6d} {m['attacks']:7d} {label:8s} {cells}", flush=True
            )

    result = leave_one_capture_out(captures, config, on_capture=show)
    gnn_mean, base_mean = result.mean_macro_f1("gnn"), result.mean_macro_f1("baseline")
    print(f"{'mean':32s} {'':6s} {'':7s} gnn      {gnn_mean:13.4f}")
    print(f"{'mean':32s} {'':6s} {'':7s} baseline {base_mean:13.4f}")
    return gnn_mean, base_mean


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    ap.add_argument(
        "--loco",
        action="store_true",
        help="also leave-one-capture-out (the last line then reports it)",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(seed=args.seed)
    captures = load_captures()
    flows = time_split(captures)
    train, validation, test = (flows.filter(pl.col("split") == s) for s in SPLIT_NAMES)
    print(
        f"IoT-23: {flows.height} labelled flows in {flows['capture'].n_unique()} captures; "
        f"train {train.height}, validation {validation.height}, test {test.height} (by time)"
    )
    result, gnn_score, base_score, seconds = fit_and_score(train, validation, test, config)
    print(
        f"gnn: best epoch {result.best_epoch} of {result.epochs_run}, "
        f"{result.seconds_per_epoch * 1000:.0f} ms/epoch on {train.height} flows"
    )
    rows = per_capture(test, gnn_score, base_score, config.threshold)
    print_table("time split: last 30% of each capture", rows, seconds)
    per_epoch = epoch_time_50k(flows, config)
    print(
        f"\ntraining time per epoch, 50,000 flows, CPU ({torch.get_num_threads()} threads): "
        f"{per_epoch:.3f} s"
    )
    gnn, base = rows[-1][1], rows[-1][2]
    print(
        f"quality: gnn macro_f1={gnn['macro_f1']:.4f} benign_fpr={gnn['benign_fpr']:.4f}; "
        f"baseline macro_f1={base['macro_f1']:.4f} benign_fpr={base['benign_fpr']:.4f}"
    )
    if args.loco:
        gnn_loco, base_loco = loco(captures, config)
        print(
            f"generalization: gnn loco_macro_f1={gnn_loco:.4f}; "
            f"baseline loco_macro_f1={base_loco:.4f}"
        )


SPLIT_NAMES = ("train", "validation", "test")

if __name__ == "__main__":
    np.set_printoptions(suppress=True)
    main()
