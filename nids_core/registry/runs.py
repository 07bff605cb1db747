"""One training run: train the GNN and the flow-only baseline on a time-split training set,
evaluate both (and the current champion) on the same test rows, and log everything to the
active MLflow run: parameters, per-epoch metrics, test metrics, plots, a JSON report, the
model with its feature spec, and a model card as the run description."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import mlflow
import polars as pl

from nids_core.escaping import escape_markdown
from nids_core.evaluation.lono import CANDIDATES, leave_one_network_out, networks_with_attacks
from nids_core.evaluation.plots import confusion_matrix_png, pr_curve_png
from nids_core.model.artifacts import log_scorer
from nids_core.model.baseline import BASELINE_THRESHOLD, baseline_scores, train_baseline
from nids_core.model.candidates import candidate_name
from nids_core.model.features import attack_labels
from nids_core.model.gnn import FlowScorer, graph_model_parts
from nids_core.model.metrics import evaluate, evaluate_by_capture
from nids_core.model.progress import EpochProgress
from nids_core.model.training import TrainConfig, TrainResult, train_served
from nids_core.stores.cold import parquet_bytes

TRAINING_ROWS_ARTIFACT = "training/train_validation_rows.parquet"
METRIC_KEYS = ("macro_f1", "attack_recall", "benign_fpr", "pr_auc", "accuracy")
CANDIDATE_CLASSES = {
    "flow_trees": "ExtraTrees on flow features (the flow-only baseline's model)",
    "context_trees": "ExtraTrees on flow features and host context shares",
    "gnn": "EGraphSAGE edge classifier (PyG)",
    "mean_fusion": "mean of an EGraphSAGE graph model and context trees",
    "max_fusion": "larger of an EGraphSAGE graph model and context trees",
}


@dataclass
class ModelRun:
    result: TrainResult
    served: dict  # test metrics of what is logged and served
    graph: dict  # the graph model (GNN) alone, on the same rows
    baseline: dict
    champion: dict | None
    per_capture: dict
    model_version: str | None
    model_uri: str | None
    report: dict
    lono: dict | None = None  # LonoResult.as_dict(), None when not measurable


def _finite(metrics: dict) -> dict:
    return {k: metrics[k] for k in METRIC_KEYS if not math.isnan(metrics[k])}


def _lono_progress(say: Callable[[str], None], flows: pl.DataFrame, seeds: int):
    """A leave-one-network-out callback that says which fold finished and the time left."""
    total = len(networks_with_attacks(flows)) * seeds
    started, done = time.monotonic(), [0]
    say(
        f"leave-one-network-out: up to {total} trainings ({seeds} seeds per held-out "
        "network), every candidate scored on each held-out network"
    )

    def on_run(held_out: str, seed: int, scores: dict, y) -> None:
        done[0] += 1
        left = (time.monotonic() - started) / done[0] * max(total - done[0], 0)
        say(
            f"leave-one-network-out {done[0]}/{total}: {held_out} held out "
            f"({len(y)} flows, {int(y.sum())} attacks), seed {seed}; ETA {left:.0f} s"
        )

    return on_run


def train_evaluate_log(
    training_set: pl.DataFrame,
    config: TrainConfig,
    champion: FlowScorer | None = None,
    champion_version: str | None = None,
    registered_model_name: str | None = None,
    lono: bool = True,
    say: Callable[[str], None] | None = None,
) -> ModelRun:
    """Everything a training run does, inside the caller's active MLflow run. With `lono`
    and two or more networks (one with attacks held out while another with attacks
    trains), also leave-one-network-out figures with `config.lono_seeds` seeds. `say`
    receives progress lines (epochs, stages, time left) while it runs."""
    say = say or (lambda line: None)
    train, validation, test = (
        training_set.filter(pl.col("split") == s) for s in ("train", "validation", "test")
    )
    measured = _measure_on_held_out_networks(training_set, config, say) if lono else None
    choice = (measured.selected, measured.selected_cut) if measured and measured.folds else None
    result = _train(train, validation, test, config, choice, say)
    _log_params(result.scorer, config, train, validation, test, _chosen_by(choice, config))
    say(
        f"trained; serving {_served_name(result.scorer)} at cut {result.scorer.threshold:.2f}; "
        "scoring the test split with it, the graph model alone and the baseline"
    )
    tested = _test_split(result.scorer, train, validation, test, config, champion)
    _log_test_metrics(tested, result)
    report = _report(result, tested, config, (train, validation, test), choice, champion_version)
    report["lono"] = measured.as_dict() if measured is not None and measured.runs else None
    _log_artifacts(report, tested, train, validation)
    info = log_scorer(result.scorer, registered_model_name)
    # MLflow hands the new version back as an int or a str depending on the store.
    version = str(info.registered_model_version) if info.registered_model_version else None
    mlflow.set_tag(
        "mlflow.note.content",
        model_card(tested.served, tested.graph, tested.baseline, tested.champion, report),
    )
    return ModelRun(
        result,
        tested.served,
        tested.graph,
        tested.baseline,
        tested.champion,
        tested.per_capture,
        version,
        info.model_uri,
        report,
        report["lono"],
    )


@dataclass
class _TestSplit:
    """Scores and metrics on the test rows: served, graph model alone, baseline, champion."""

    y: object
    scores: dict  # name -> (scores, threshold)
    served: dict
    graph: dict
    baseline: dict
    champion: dict | None
    per_capture: dict


def _served_name(scorer: FlowScorer) -> str:
    return getattr(scorer, "served_candidate", "gnn")


def _measure_on_held_out_networks(training_set: pl.DataFrame, config: TrainConfig, say):
    say("choosing what to serve: leave one network out over the training set's networks")
    return leave_one_network_out(
        training_set.drop("split"),
        config,
        seeds=range(config.lono_seeds),
        on_run=_lono_progress(say, training_set, config.lono_seeds),
    )


def _chosen_by(choice, config: TrainConfig) -> str:
    """How the served candidate and its cut were chosen, in words."""
    if choice and candidate_name(config.serve) == "auto":
        return "over held-out networks (leave one network out)"
    if choice:
        return f"by the setting serve={config.serve}, cut over held-out networks"
    return (
        "without held-out networks (fewer than two networks with attacks): "
        "the default candidate at the cut best on the validation rows"
    )


def _train(train, validation, test, config: TrainConfig, choice, say) -> TrainResult:
    """Train what is served, with per-epoch metrics logged and progress said."""
    progress = EpochProgress(say, config.max_epochs, config.patience)

    def log_epoch(row: dict) -> None:
        mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])
        progress(row)

    say(
        f"training on {train.height} flows, validating on {validation.height}, testing on "
        f"{test.height}"
    )
    result = train_served(train, validation, config, on_epoch=log_epoch, choice=choice)
    progress.finish()
    return result


def _log_params(scorer, config: TrainConfig, train, validation, test, chosen_by: str) -> None:
    served = _served_name(scorer)
    mlflow.log_params(
        {
            **{f"train_{k}": v for k, v in asdict(config).items()},
            "train_rows": train.height,
            "validation_rows": validation.height,
            "test_rows": test.height,
            "served_candidate": served,
            "served_chosen": chosen_by,
            "model_class": CANDIDATE_CLASSES[served],
        }
    )


def _test_split(scorer, train, validation, test, config: TrainConfig, champion) -> _TestSplit:
    """The served model, the graph model alone, the flow-only baseline (fitted on the same
    train and validation rows) and the champion, on the same test rows."""
    y = attack_labels(test)
    graph_score_fn, graph_threshold = graph_model_parts(scorer)
    baseline = train_baseline(pl.concat([train, validation]), scorer.spec, config.seed)
    scores = {
        "served": (scorer.score(test), scorer.threshold),
        "gnn": (graph_score_fn(test), graph_threshold),
        "baseline": (baseline_scores(baseline, test, scorer.spec), BASELINE_THRESHOLD),
    }
    if champion is not None:
        scores["champion"] = (champion.score(test), champion.threshold)
    metrics = {name: evaluate(y, score, cut) for name, (score, cut) in scores.items()}
    return _TestSplit(
        y,
        scores,
        metrics["served"],
        metrics["gnn"],
        metrics["baseline"],
        metrics.get("champion"),
        evaluate_by_capture(test, y, scores),
    )


def _log_test_metrics(tested: _TestSplit, result: TrainResult) -> None:
    mlflow.log_metrics({f"test_{k}": v for k, v in _finite(tested.served).items()})
    mlflow.log_metrics({f"gnn_test_{k}": v for k, v in _finite(tested.graph).items()})
    mlflow.log_metrics({f"baseline_test_{k}": v for k, v in _finite(tested.baseline).items()})
    if tested.champion is not None:
        mlflow.log_metrics({f"champion_test_{k}": v for k, v in _finite(tested.champion).items()})
    mlflow.log_metrics(
        {
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "seconds_per_epoch": result.seconds_per_epoch,
            "training_seconds": result.seconds,
            "served_threshold": result.scorer.threshold,
        }
    )


def _report(
    result: TrainResult, tested: _TestSplit, config: TrainConfig, splits, choice, champion_version
) -> dict:
    train, validation, test = splits
    champion = tested.champion
    return {
        "test": tested.served,
        "gnn": tested.graph,
        "baseline": tested.baseline,
        "champion": {"version": champion_version, **champion} if champion else None,
        "per_capture": tested.per_capture,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "rows": {"train": train.height, "validation": validation.height, "test": test.height},
        "feature_names": result.scorer.spec.names,
        "graph_window_minutes": config.window.total_seconds() / 60 if config.window else 0,
        "threshold": result.scorer.threshold,
        "serve": _served_name(result.scorer),
        "served_chosen": _chosen_by(choice, config),
    }


def _log_artifacts(report: dict, tested: _TestSplit, train, validation) -> None:
    """The JSON report, the plots, and the rows the model learnt from."""
    if report["lono"]:
        for candidate, figures in report["lono"]["summary"].items():
            mlflow.log_metrics({f"lono_{candidate}_{k}": v for k, v in figures.items() if v == v})
    mlflow.log_dict(report, "evaluation/report.json")
    _log_bytes(
        confusion_matrix_png(tested.served["confusion"], "served model, test split"),
        "confusion_matrix.png",
    )
    _log_bytes(
        confusion_matrix_png(tested.baseline["confusion"], "baseline, test split"),
        "baseline_confusion_matrix.png",
    )
    curves = {name: score for name, (score, _) in tested.scores.items()}
    _log_bytes(pr_curve_png(tested.y, curves, "precision-recall, test split"), "pr_curve.png")
    # The rows the model learnt from travel with it, so `nids model evaluate --baseline` can
    # fit the flow-only baseline on exactly the same rows later.
    _log_bytes(parquet_bytes(pl.concat([train, validation])), TRAINING_ROWS_ARTIFACT)


def _log_bytes(data: bytes, name: str) -> None:
    """Log bytes as artifact `name` (`evaluation/<name>` when it has no folder)."""
    import tempfile
    from pathlib import Path

    folder, _, file = name.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / file
        path.write_bytes(data)
        mlflow.log_artifact(str(path), artifact_path=folder or "evaluation")


def model_card(served: dict, graph: dict, base: dict, champion: dict | None, report: dict) -> str:
    """Markdown for the MLflow run description."""

    def row(name: str, m: dict) -> str:
        cells = " | ".join("-" if math.isnan(m[k]) else f"{m[k]:.4f}" for k in METRIC_KEYS)
        return f"| {name} | {cells} |"

    served_name = report["serve"]
    lines = [
        "## nids-gnn model card",
        f"Served: {served_name} ({CANDIDATE_CLASSES.get(served_name, served_name)}), cut "
        f"{report['threshold']:.2f}, chosen {report.get('served_chosen', '')}."
        + (
            " A simpler candidate than the graph model did best on networks it had not "
            "seen, so it is served; the graph model is kept for reports."
            if served_name in ("flow_trees", "context_trees")
            else ""
        ),
        f"Graph model: E-GraphSAGE-style edge classifier over the host graph (hosts = "
        f"nodes, flows = edges), graph window {report['graph_window_minutes']} min. "
        f"Features: {len(report['feature_names'])} flow features (no addresses, ports or "
        "timestamps) and, for the context trees, host context shares per window.",
        "",
        f"Time split (rows): {json.dumps(report['rows'])}; best epoch {report['best_epoch']}.",
        "",
        "| model | " + " | ".join(METRIC_KEYS) + " |",
        "|---" * (len(METRIC_KEYS) + 1) + "|",
        row("served", served),
        row("graph model alone", graph),
        row("flow-only baseline", base),
    ]
    if champion:
        lines.append(row("current champion", champion))
    lines += ["", "### On networks it has never seen (leave one network out, with seeds)"]
    lines += lono_markdown(report.get("lono")).splitlines()
    return "\n".join(lines)


def lono_markdown(lono: dict | None) -> str:
    """Leave-one-network-out tables: macro F1 and benign FPR per held-out network for every
    candidate, and mean / worst / seed spread / mean over kinds / highest benign FPR."""
    if not lono:
        return "Not measured: fewer than two networks with attacks in the training set."

    head = "| held-out network | kind | " + " | ".join(CANDIDATES) + " |"
    rule = "|---|---|" + "---|" * len(CANDIDATES)
    lines = [
        f"Served: {lono['selected']} at cut {lono['selected_cut']:.2f}. On each held-out "
        "network, `served` is the candidate chosen without that network (its cut too); "
        "`baseline` is the flow-only trees at 0.5.",
        "",
        "Macro F1 (mean over seeds):",
        "",
        head,
        rule,
    ]
    kinds = lono.get("kinds", {})
    for name in lono["networks"]:
        cells = " | ".join(f"{lono['per_network'][c][name]:.4f}" for c in CANDIDATES)
        lines.append(
            f"| {escape_markdown(name, 120)} | {escape_markdown(kinds.get(name, ''), 60)} | "
            f"{cells} |"
        )
    for key in (
        "mean",
        "worst",
        "seed_sd",
        "kind_mean",
        "max_benign_fpr",
        "max_alarms_per_host_day",
    ):
        cells = " | ".join(f"{lono['summary'][c][key]:.4f}" for c in CANDIDATES)
        lines.append(f"| **{key}** | | {cells} |")
    lines += ["", "Benign false-positive rate (mean over seeds):", "", head, rule]
    for name in lono["networks"]:
        cells = " | ".join(f"{lono['benign_fpr'][c][name]:.4f}" for c in CANDIDATES)
        lines.append(
            f"| {escape_markdown(name, 120)} | {escape_markdown(kinds.get(name, ''), 60)} | "
            f"{cells} |"
        )
    return "\n".join(lines)
