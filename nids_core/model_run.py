"""One training run: train the GNN and the flow-only baseline on a time-split training set,
evaluate both (and the current champion) on the same test rows, and log everything to the
active MLflow run: parameters, per-epoch metrics, test metrics, plots, a JSON report, the
model with its feature spec, and a model card as the run description."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass

import mlflow
import polars as pl

from nids_core.baseline import BASELINE_THRESHOLD, baseline_scores, train_baseline
from nids_core.cold_store import parquet_bytes
from nids_core.features import attack_labels
from nids_core.gnn import FlowScorer
from nids_core.metrics import evaluate, evaluate_by_capture
from nids_core.model_artifacts import log_scorer
from nids_core.report_plots import confusion_matrix_png, pr_curve_png
from nids_core.training import TrainConfig, TrainResult, train_gnn

TRAINING_ROWS_ARTIFACT = "training/train_validation_rows.parquet"
METRIC_KEYS = ("macro_f1", "attack_recall", "benign_fpr", "pr_auc", "accuracy")


@dataclass
class ModelRun:
    result: TrainResult
    gnn: dict
    baseline: dict
    champion: dict | None
    per_capture: dict
    model_version: str | None
    model_uri: str | None
    report: dict
    loco: dict | None = None  # {"per_capture": ..., "gnn": mean, "baseline": mean}


def _finite(metrics: dict) -> dict:
    return {k: metrics[k] for k in METRIC_KEYS if not math.isnan(metrics[k])}


def train_evaluate_log(
    training_set: pl.DataFrame,
    config: TrainConfig,
    champion: FlowScorer | None = None,
    champion_version: str | None = None,
    registered_model_name: str | None = None,
    loco: bool = False,
) -> ModelRun:
    """Everything a training run does, inside the caller's active MLflow run. With `loco`
    and more than one capture in the training set, also leave-one-capture-out figures."""
    train, validation, test = (
        training_set.filter(pl.col("split") == s) for s in ("train", "validation", "test")
    )
    mlflow.log_params(
        {
            **{f"train_{k}": v for k, v in asdict(config).items()},
            "train_rows": train.height,
            "validation_rows": validation.height,
            "test_rows": test.height,
            "model_class": "EGraphSAGE edge classifier (PyG)",
        }
    )

    def log_epoch(row: dict) -> None:
        mlflow.log_metrics({k: v for k, v in row.items() if k != "epoch"}, step=row["epoch"])

    result = train_gnn(train, validation, config, on_epoch=log_epoch)
    scorer = result.scorer
    y_test = attack_labels(test)
    gnn_score = scorer.score(test)
    baseline = train_baseline(pl.concat([train, validation]), scorer.spec, config.seed)
    base_score = baseline_scores(baseline, test, scorer.spec)
    gnn = evaluate(y_test, gnn_score, scorer.threshold)
    base = evaluate(y_test, base_score, BASELINE_THRESHOLD)
    scores = {"gnn": (gnn_score, scorer.threshold), "baseline": (base_score, BASELINE_THRESHOLD)}
    champ = None
    if champion is not None:
        champion_score = champion.score(test)
        champ = evaluate(y_test, champion_score, champion.threshold)
        scores["champion"] = (champion_score, champion.threshold)
    per_capture = evaluate_by_capture(test, y_test, scores)

    mlflow.log_metrics({f"test_{k}": v for k, v in _finite(gnn).items()})
    mlflow.log_metrics({f"baseline_test_{k}": v for k, v in _finite(base).items()})
    if champ is not None:
        mlflow.log_metrics({f"champion_test_{k}": v for k, v in _finite(champ).items()})
    mlflow.log_metrics(
        {
            "best_epoch": result.best_epoch,
            "epochs_run": result.epochs_run,
            "seconds_per_epoch": result.seconds_per_epoch,
            "training_seconds": result.seconds,
        }
    )
    report = {
        "test": gnn,
        "baseline": base,
        "champion": {"version": champion_version, **champ} if champ else None,
        "per_capture": per_capture,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "rows": {"train": train.height, "validation": validation.height, "test": test.height},
        "feature_names": scorer.spec.names,
        "graph_window_minutes": config.window_minutes,
        "threshold": scorer.threshold,
    }
    loco_summary = None
    if loco and "capture" in training_set.columns and training_set["capture"].n_unique() > 1:
        from nids_core.loco import leave_one_capture_out

        result_loco = leave_one_capture_out(training_set.drop("split"), config)
        if result_loco.per_capture:
            loco_summary = {
                "per_capture": result_loco.per_capture,
                "gnn": result_loco.mean_macro_f1("gnn"),
                "baseline": result_loco.mean_macro_f1("baseline"),
            }
            mlflow.log_metrics(
                {
                    "loco_gnn_macro_f1": loco_summary["gnn"],
                    "loco_baseline_macro_f1": loco_summary["baseline"],
                }
            )
    report["loco"] = loco_summary
    mlflow.log_dict(report, "evaluation/report.json")
    _log_bytes(confusion_matrix_png(gnn["confusion"], "GNN, test split"), "confusion_matrix.png")
    _log_bytes(
        confusion_matrix_png(base["confusion"], "baseline, test split"),
        "baseline_confusion_matrix.png",
    )
    curves = {name: score for name, (score, _) in scores.items()}
    _log_bytes(pr_curve_png(y_test, curves, "precision-recall, test split"), "pr_curve.png")
    # The rows the model learnt from travel with it, so `nids model evaluate --baseline` can
    # fit the flow-only baseline on exactly the same rows later.
    _log_bytes(parquet_bytes(pl.concat([train, validation])), TRAINING_ROWS_ARTIFACT)
    info = log_scorer(scorer, registered_model_name)
    version = str(info.registered_model_version) if info.registered_model_version else None
    mlflow.set_tag("mlflow.note.content", model_card(gnn, base, champ, report))
    return ModelRun(
        result, gnn, base, champ, per_capture, version, info.model_uri, report, loco_summary
    )


def _log_bytes(data: bytes, name: str) -> None:
    """Log bytes as artifact `name` (`evaluation/<name>` when it has no folder)."""
    import tempfile
    from pathlib import Path

    folder, _, file = name.rpartition("/")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / file
        path.write_bytes(data)
        mlflow.log_artifact(str(path), artifact_path=folder or "evaluation")


def model_card(gnn: dict, base: dict, champion: dict | None, report: dict) -> str:
    """Markdown for the MLflow run description."""

    def row(name: str, m: dict) -> str:
        cells = " | ".join("-" if math.isnan(m[k]) else f"{m[k]:.4f}" for k in METRIC_KEYS)
        return f"| {name} | {cells} |"

    lines = [
        "## nids-gnn model card",
        "E-GraphSAGE-style edge classifier over the host graph (hosts = nodes, flows = "
        f"edges), graph window {report['graph_window_minutes']} min. Features: "
        f"{len(report['feature_names'])} flow features (no addresses, ports or timestamps).",
        "",
        f"Time split (rows): {json.dumps(report['rows'])}; best epoch {report['best_epoch']}.",
        "",
        "| model | " + " | ".join(METRIC_KEYS) + " |",
        "|---" * (len(METRIC_KEYS) + 1) + "|",
        row("gnn", gnn),
        row("flow-only baseline", base),
    ]
    if champion:
        lines.append(row("current champion", champion))
    loco = report.get("loco")
    lines += ["", "### On networks it has never seen (leave one capture out)"]
    if not loco:
        lines.append("Not measured: the training window holds one capture/network.")
    else:
        lines += [
            f"Mean macro F1: GNN {loco['gnn']:.4f}, flow-only baseline {loco['baseline']:.4f} "
            "(in-network figures above are on later flows of the same captures).",
            "",
            "| held-out capture | flows | attacks | GNN macro F1 | baseline macro F1 |",
            "|---|---|---|---|---|",
        ]
        for name, m in loco["per_capture"].items():
            lines.append(
                f"| {name} | {m['gnn']['flows']} | {m['gnn']['attacks']} | "
                f"{m['gnn']['macro_f1']:.4f} | {m['baseline']['macro_f1']:.4f} |"
            )
    return "\n".join(lines)
