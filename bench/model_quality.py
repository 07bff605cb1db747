"""Model quality on every labelled reference network of the data directory (IoT-23 homes,
the Stratosphere Botnet-4 Windows host, the UWF-ZeekData22 cyber range): the served model,
each candidate it is chosen from, and the flow-only baseline.

With `--lono` (first): leave one network out over every network with attacks, each with
every seed of `--seeds` (default 0,1,2): a row per network, seed and candidate (cut, macro
F1, attack recall, benign FPR, ROC-AUC), per-network means, mean / worst / seed spread /
mean over kinds / highest benign FPR, and the candidate and cut the final model serves.
Cuts and the served choice on a network are chosen without that network's labels
(nids_core.evaluation.lono).

Then the time split per network: the first 70% of each network's flows by time train (60%)
and validate (10%), the last 30% test, the served model being the selected candidate at
the selected cut (without --lono: the default candidate at the validation cut). Prints a
table per network, IoT-23 overall and overall; the training time per epoch for 50,000
flows on this machine's CPU; a `served:` line for IoT-23's later flows; the line
`quality: gnn macro_f1=<x> benign_fpr=<y>; baseline macro_f1=<z> benign_fpr=<w>` (IoT-23);
and with --lono last the contract line
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
from nids_core.model.baseline import BASELINE_THRESHOLD, baseline_scores, train_baseline
from nids_core.model.candidates import SERVABLE
from nids_core.model.features import attack_labels
from nids_core.model.gnn import graph_model_parts
from nids_core.model.metrics import evaluate, evaluate_by_capture
from nids_core.model.splits import time_split
from nids_core.model.training import TrainConfig, train_gnn, train_served
from nids_core.training_data.data_dir import find_data_dir, labelled_folders
from nids_core.training_data.reference_corpus import read_corpus

COLUMNS = ("macro_f1", "attack_recall", "benign_fpr", "pr_auc", "accuracy")


def load_captures() -> pl.DataFrame:
    folders = labelled_folders(find_data_dir())
    if not folders:
        sys.exit("no labelled captures in the data directory (see `nids data download`)")
    flows, summaries = read_corpus([str(f) for f in folders])
    for s in summaries:
        print(
            f"read {s.capture}: {s.flows} flows, {s.attacks} attacks, "
            f"{s.flows - s.labelled} unlabelled, {s.unreadable} unreadable, "
            f"{s.repeated} repeated rows read once"
        )
    return flows.filter(pl.col("label").is_not_null())


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


def fit_and_score(train, validation, test, config, choice=None):
    t0 = time.perf_counter()
    result = train_served(train, validation, config, choice=choice)
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


LONO_COLUMNS = ("cut", "macro_f1", "attack_recall", "benign_fpr", "roc_auc")


def lono(captures: pl.DataFrame, config: TrainConfig, seeds: list[int]) -> LonoResult:
    """Leave one network out (nids_core.evaluation.lono), every candidate."""
    t0 = time.perf_counter()

    def progress(held_out: str, seed: int, scores: dict, y: np.ndarray) -> None:
        print(
            f"  fold {held_out} seed {seed}: {len(y)} flows, {int(y.sum())} attacks "
            f"({time.perf_counter() - t0:.0f} s)",
            flush=True,
        )

    print(f"\nleave-one-network-out over every network with attacks; seeds {seeds}")
    return leave_one_network_out(captures, config, seeds, on_run=progress)


def save_folds(result: LonoResult, path: str) -> None:
    arrays = {}
    for i, f in enumerate(result.folds):
        arrays[f"{i}|{f.network}|{f.kind}|{f.seed}|{f.benign_hosts}|{f.days}|y"] = f.y
        for c, score in f.scores.items():
            arrays[f"{i}|{f.network}|{f.kind}|{f.seed}|{f.benign_hosts}|{f.days}|{c}"] = score
    np.savez_compressed(path, **arrays)


def print_lono(result: LonoResult) -> None:
    head = " ".join(f"{c:>13s}" for c in LONO_COLUMNS)
    print(
        f"\n{'held-out network':30s} {'seed':>4s} {'flows':>6s} {'attacks':>7s} candidate     {head}"
    )
    for network in result.networks:
        for seed, metrics in sorted(result.runs[network].items()):
            for label in CANDIDATES:
                m = metrics[label]
                shown = f"served={m['candidate']}" if label == "served" else label
                cells = " ".join(f"{fmt(m[c]):>13s}" for c in LONO_COLUMNS)
                print(
                    f"{network:30s} {seed:4d} {m['flows']:6d} {m['attacks']:7d} {shown:13s} {cells}"
                )
    for key, title in (("macro_f1", "macro F1"), ("benign_fpr", "benign FPR")):
        print(f"\n{title} per held-out network (kind), mean over seeds:")
        print(f"{'network':30s} {'kind':13s} " + " ".join(f"{c:>13s}" for c in CANDIDATES))
        per = {c: result.per_network(c, key) for c in CANDIDATES}
        for network in result.networks:
            print(
                f"{network:30s} {result.kinds[network]:13s} "
                + " ".join(f"{per[c][network]:13.4f}" for c in CANDIDATES)
            )
    print()
    for key in (
        "mean",
        "worst",
        "seed_sd",
        "kind_mean",
        "max_benign_fpr",
        "max_alarms_per_host_day",
    ):
        summary = {c: result.summary(c)[key] for c in CANDIDATES}
        print(f"{key:44s} " + " ".join(f"{summary[c]:13.4f}" for c in CANDIDATES))
    chosen = [c for by in result.chosen.values() for c in by.values()]
    print(
        "served per fold (chosen without the held-out network): "
        + ", ".join(f"{c} {chosen.count(c)}" for c in SERVABLE if chosen.count(c))
    )
    print(
        f"final model serves {result.selected} at cut {result.selected_cut:.2f} "
        "(cuts over all held-out networks: "
        + ", ".join(f"{c} {t:.2f}" for c, t in result.final_cuts.items())
        + ")"
    )


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
    ap.add_argument(
        "--save-folds",
        default=None,
        help="write every fold's labels and candidate scores here (a .npz), to study cuts",
    )
    ap.add_argument("--max-epochs", type=int, default=None, help="fewer epochs (quick runs)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(seed=args.seed)
    if args.max_epochs:
        config = TrainConfig(seed=args.seed, max_epochs=args.max_epochs)
    captures = load_captures()
    result = None
    choice = None
    if args.lono:
        seeds = [int(s) for s in args.seeds.split(",")]
        if len(seeds) < 3:
            sys.exit("--lono needs at least 3 seeds")
        result = lono(captures, config, seeds)
        choice = (result.selected, result.selected_cut)
        if args.save_folds:
            save_folds(result, args.save_folds)
    flows = time_split(captures)
    train, validation, test = (flows.filter(pl.col("split") == s) for s in SPLIT_NAMES)
    print(
        f"\ncorpus: {flows.height} labelled flows in {flows['capture'].n_unique()} networks "
        f"of {flows['network_kind'].n_unique()} kinds; train {train.height}, validation "
        f"{validation.height}, test {test.height} (by time within each network)"
    )
    fitted, scores, seconds = fit_and_score(train, validation, test, config, choice)
    print(
        f"gnn: best epoch {fitted.best_epoch} of {fitted.epochs_run}, "
        f"{fitted.seconds_per_epoch * 1000:.0f} ms/epoch on {train.height} flows; served "
        f"{getattr(fitted.scorer, 'served_candidate', 'gnn')} at cut "
        f"{fitted.scorer.threshold:.2f}"
        + (" (chosen over held-out networks)" if choice else " (chosen on the validation rows)")
    )
    rows = per_capture(test, scores)
    iot = test["network_kind"] == "iot-home"
    iot_test = test.filter(iot)
    iot_scores = {m: (s[iot.to_numpy()], t) for m, (s, t) in scores.items()}
    y_iot = attack_labels(iot_test)
    iot_overall = {m: evaluate(y_iot, s, t) for m, (s, t) in iot_scores.items()}
    rows.insert(-1, ("IoT-23 overall", iot_overall))
    print_table("time split: last 30% of each network", rows)
    print(f"training seconds: served (gnn + trees) {seconds[0]:.1f}, baseline {seconds[1]:.1f}")
    per_epoch = epoch_time_50k(flows, config)
    print(
        f"\ntraining time per epoch, 50,000 flows, CPU ({torch.get_num_threads()} threads): "
        f"{per_epoch:.3f} s"
    )
    served, gnn, base = (iot_overall[m] for m in ("served", "gnn", "baseline"))
    print(
        f"served (IoT-23 time split): macro_f1={served['macro_f1']:.4f} "
        f"benign_fpr={served['benign_fpr']:.4f}"
    )
    print(
        f"quality: gnn macro_f1={gnn['macro_f1']:.4f} benign_fpr={gnn['benign_fpr']:.4f}; "
        f"baseline macro_f1={base['macro_f1']:.4f} benign_fpr={base['benign_fpr']:.4f}"
    )
    if result is not None:
        print_lono(result)
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
