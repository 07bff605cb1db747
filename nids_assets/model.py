"""Batch side: training set from cold data, the GNN with its promotion gate, the champion."""

import logging
from datetime import UTC, date, datetime

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from nids_assets.reference import flow_labels, reference_flows
from nids_core.escaping import escape_markdown
from nids_core.evaluation.gate import evaluate_gate
from nids_core.model.progress import TRAINING_PROGRESS_LOGGER
from nids_core.registry.names import CHALLENGER, CHAMPION
from nids_core.training_data.analyst_labels import read_labels, resolve_labels
from nids_core.training_data.reference_corpus import corpus_digest, load_reference_corpus
from nids_core.training_data.training_set import (
    TRAINING_SET_PATH,
    build_training_set,
    read_cold_window,
    window_days,
)
from nids_resources.mlflow import (
    MlflowTrackingResource,
    ModelRegistryResource,
    ModelSettingsResource,
)
from nids_resources.reference import ReferenceCorpusResource
from nids_resources.serving import ServingSettingsResource
from nids_resources.stores import ColdStoreResource

MODEL_GROUP = "model"

GATE_CHECKS = {
    "gate_test_accuracy": "test_accuracy",
    "gate_macro_f1": "macro_f1",
    "gate_benign_fpr": "benign_fpr",
    "gate_not_worse_than_champion": "not_worse_than_champion",
    "gate_lono_vs_baseline": "lono_vs_baseline",
}
_GATE_DESCRIPTIONS = {
    "gate_test_accuracy": "Promotion gate: test accuracy at least NIDS_GATE_MIN_ACCURACY.",
    "gate_macro_f1": "Promotion gate: test macro F1 at least NIDS_GATE_MIN_MACRO_F1.",
    "gate_benign_fpr": "Promotion gate: benign false-positive rate at most "
    "NIDS_GATE_MAX_BENIGN_FPR.",
    "gate_not_worse_than_champion": "Promotion gate: macro F1 on the same test rows drops by "
    "at most NIDS_GATE_MAX_F1_DROP against the current champion (passes when there is none).",
    "gate_lono_vs_baseline": "Promotion gate, on networks the model has never "
    "seen: leave-one-network-out macro F1 (every network with attacks held out in turn, "
    "NIDS_TRAIN_LONO_SEEDS seeds each, thresholds chosen on the training networks) of the "
    "served model at least the flow-only baseline's on the same folds and seeds; the graph "
    "model alone is shown beside it (passes when fewer than two networks have attacks).",
}
BASELINE_CHECK = "gnn_vs_baseline"
GNN_CHECKS = [
    *(
        AssetCheckSpec(name, asset="gnn_model", blocking=True, description=_GATE_DESCRIPTIONS[name])
        for name in GATE_CHECKS
    ),
    AssetCheckSpec(
        BASELINE_CHECK,
        asset="gnn_model",
        blocking=False,
        description="The served model's test macro F1 against the flow-only baseline on the "
        "same time split (a warning when the baseline is better).",
    ),
]


class TrainingSetConfig(Config):
    end_date: str | None = Field(
        default=None,
        description="Last cold day of the window (YYYY-MM-DD); default: today (UTC).",
    )


@asset(
    deps=[reference_flows, flow_labels, "cold_flows"],
    group_name=MODEL_GROUP,
    kinds={"parquet", "polars"},
)
def training_set(
    context: AssetExecutionContext,
    config: TrainingSetConfig,
    cold_store: ColdStoreResource,
    reference_corpus: ReferenceCorpusResource,
    model_settings: ModelSettingsResource,
) -> MaterializeResult:
    """The labelled reference corpus (every capture at its current content) plus the live
    flows analysts labelled in the last N daily cold partitions (NIDS_TRAINING_DAYS, default
    21; the newest label per uid, an analyst's label winning over the corpus). Live flows
    without an analyst's label never enter. Split by time within each network into train /
    validation / test (never random rows), written to `training/training_set.parquet`."""
    end = date.fromisoformat(config.end_date) if config.end_date else datetime.now(UTC).date()
    store = cold_store.store()
    versions = reference_corpus.versions()
    reference = load_reference_corpus(store, versions, reference_corpus.networks())
    days = window_days(store, model_settings.training_days, end)
    live = read_cold_window(store, days)
    labels = resolve_labels(read_labels(store), live)
    frame, summary = build_training_set(
        reference,
        live,
        labels,
        days,
        model_settings.validation_fraction,
        model_settings.test_fraction,
    )
    path = store.write_frame(TRAINING_SET_PATH, frame)
    context.log.info(f"training set: {summary.rows} rows, attacks {summary.attacks}")
    return MaterializeResult(
        metadata={
            **summary.as_metadata(),
            "rows": frame.height,
            "attack_share": round(float((frame["label"] == "malicious").mean()), 4),
            "reference_corpus": corpus_digest(versions),
            "path": path,
        }
    )


def _lono_markdown(lono: dict | None) -> str:
    from nids_core.registry.runs import lono_markdown

    return lono_markdown(lono)


def _per_capture_markdown(per_capture: dict) -> str:
    if not per_capture:
        return "no capture column in the training set"
    models = list(next(iter(per_capture.values())))
    head = "| capture | flows | attacks | " + " | ".join(f"{m} macro F1" for m in models) + " |"
    lines = [head, "|---" * (3 + len(models)) + "|"]
    for name, by_model in per_capture.items():
        first = by_model[models[0]]
        cells = " | ".join(f"{by_model[m]['macro_f1']:.4f}" for m in models)
        lines.append(
            f"| {escape_markdown(name, 120)} | {first['flows']} | {first['attacks']} | {cells} |"
        )
    return "\n".join(lines)


def _metric_md(prefix: str, metrics: dict) -> dict:
    keys = ("macro_f1", "attack_recall", "benign_fpr", "pr_auc", "accuracy")
    return {f"{prefix}{k}": round(float(metrics[k]), 5) for k in keys if metrics[k] == metrics[k]}


def _progress_to(context: AssetExecutionContext):
    """Training progress goes to the run's log (the UI) and to the Python logger
    `nids.training`, which `nids demo` shows on its console."""
    python_logger = logging.getLogger(TRAINING_PROGRESS_LOGGER)

    def say(line: str) -> None:
        context.log.info(line)
        python_logger.info(line)

    return say


@asset(
    deps=[training_set],
    group_name=MODEL_GROUP,
    kinds={"pytorch", "mlflow"},
    check_specs=GNN_CHECKS,
    tags={"nids/kind": "training"},
)
def gnn_model(
    context: AssetExecutionContext,
    cold_store: ColdStoreResource,
    mlflow_tracking: MlflowTrackingResource,
    model_registry: ModelRegistryResource,
    model_settings: ModelSettingsResource,
    serving: ServingSettingsResource,
) -> MaterializeResult:
    """The E-GraphSAGE flow classifier trained on the training set, with a flow-only
    baseline beside it. Everything is logged to one MLflow run (parameters, per-epoch
    metrics, test metrics, confusion-matrix and precision-recall PNGs, a JSON report, the
    model with its feature spec); a new version of the registered model gets alias
    `challenger`. The blocking gate checks decide whether it may become champion."""
    registry = model_registry.registry()
    champion, champion_problem = _current_champion(context, registry, serving)
    with mlflow_tracking.run() as active:
        run = _train_and_register(context, cold_store, registry, model_settings, champion)
        gate = _judge(registry, run, model_settings, champion_problem)
    passed = all(g.passed for g in gate.values())
    context.log.info(
        f"{registry.model_name} v{run.model_version}: macro F1 {run.served['macro_f1']:.4f} "
        f"(baseline {run.baseline['macro_f1']:.4f}); gate {'passed' if passed else 'FAILED'}"
    )
    run_url = model_registry.run_url(active.info.experiment_id, active.info.run_id)
    return MaterializeResult(
        metadata=_model_metadata(registry, run, passed, run_url, active.info.run_id),
        check_results=_check_results(run, gate),
    )


def _current_champion(context: AssetExecutionContext, registry, serving):
    """The champion to compare against, and why there is none when it cannot be loaded: a
    champion whose files are missing or corrupt must not stop its replacement from being
    trained (the challenger is then judged on the absolute thresholds alone)."""
    from nids_core.serving.model_cache import load_served

    current = registry.version_by_alias(CHAMPION)
    if current is None:
        return None, None
    try:
        return load_served(registry, current.version, serving.model_cache_dir), None
    except Exception as exc:
        problem = f"champion version {current.version} could not be loaded: {exc}"
        context.log.warning(problem)
        return None, problem


def _train_and_register(context, cold_store, registry, model_settings, champion):
    """Train, evaluate and log in the active MLflow run; register the version and record
    its files' checksum (the training run is the model's writer)."""
    from nids_core.registry.runs import train_evaluate_log
    from nids_core.serving.model_cache import record_artifact_checksum

    run = train_evaluate_log(
        cold_store.store().read_frame(TRAINING_SET_PATH),
        model_settings.train_config(),
        champion.scorer if champion else None,
        champion.version if champion else None,
        registered_model_name=registry.model_name,
        say=_progress_to(context),
    )
    record_artifact_checksum(registry, run.model_version)
    return run


def _judge(registry, run, model_settings, champion_problem) -> dict:
    """The gate's verdict on the new version, signed on the version and logged to its run;
    the version becomes `challenger` whatever the verdict."""
    import mlflow

    gate = evaluate_gate(
        run.served, run.champion, model_settings.thresholds(), champion_problem, run.lono
    )
    passed = all(g.passed for g in gate.values())
    registry.set_challenger(run.model_version)
    registry.mark_gate(run.model_version, passed)
    mlflow.log_dict([g.__dict__ for g in gate.values()], "evaluation/gate.json")
    mlflow.set_tag("nids.gate", "passed" if passed else "failed")
    return gate


def _check_results(run, gate: dict) -> list[AssetCheckResult]:
    """One blocking check per gate rule (matched by the rule's name), and the warning
    against the baseline on the time split."""
    checks = [
        AssetCheckResult(
            check_name=check,
            passed=gate[rule].passed,
            metadata={
                "value": float(gate[rule].value),
                "threshold": float(gate[rule].threshold),
                "detail": gate[rule].detail,
                "model_version": run.model_version,
                **(
                    {"per_network": MetadataValue.md(_lono_markdown(run.lono))}
                    if rule == "lono_vs_baseline"
                    else {}
                ),
            },
        )
        for check, rule in GATE_CHECKS.items()
    ]
    lead = run.served["macro_f1"] - run.baseline["macro_f1"]
    checks.append(
        AssetCheckResult(
            check_name=BASELINE_CHECK,
            passed=lead >= 0,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "served_macro_f1": float(run.served["macro_f1"]),
                "gnn_alone_macro_f1": float(run.graph["macro_f1"]),
                "baseline_macro_f1": float(run.baseline["macro_f1"]),
                "served_minus_baseline": float(lead),
                "served_benign_fpr": float(run.served["benign_fpr"]),
                "baseline_benign_fpr": float(run.baseline["benign_fpr"]),
            },
        )
    )
    return checks


def _model_metadata(registry, run, passed: bool, run_url: str, run_id: str) -> dict:
    """What the UI shows of a trained version: where it is, its figures, its gate."""
    lono = (
        {
            f"lono_{c}_{k}": round(float(v), 5)
            for c, figures in run.lono["summary"].items()
            for k, v in figures.items()
        }
        if run.lono
        else {}
    )
    return {
        "model_version": run.model_version,
        "model_uri": registry.uri(run.model_version),
        "alias": CHALLENGER,
        "gate": "passed" if passed else "failed",
        "mlflow_run": MetadataValue.url(run_url),
        "mlflow_run_id": run_id,
        **_metric_md("test_", run.served),
        **_metric_md("gnn_test_", run.graph),
        **_metric_md("baseline_test_", run.baseline),
        **(_metric_md("champion_test_", run.champion) if run.champion else {}),
        "best_epoch": run.result.best_epoch,
        "epochs_run": run.result.epochs_run,
        "seconds_per_epoch": round(run.result.seconds_per_epoch, 4),
        "per_capture": MetadataValue.md(_per_capture_markdown(run.per_capture)),
        "served_threshold": float(run.report["threshold"]),
        "served_candidate": run.report["serve"],
        "served_chosen": run.report["served_chosen"],
        **lono,
        "lono_per_network": MetadataValue.md(_lono_markdown(run.lono)),
    }


@asset(
    deps=[gnn_model],
    group_name=MODEL_GROUP,
    kinds={"mlflow"},
)
def champion_model(
    context: AssetExecutionContext, model_registry: ModelRegistryResource
) -> MaterializeResult:
    """The serving model: alias `champion` of the registered model, moved to the version
    `gnn_model` last trained, only when that version passed the promotion gate (in the same
    run the blocking gate checks stop this step; run alone, it refuses a version without a
    passed gate). The previous champion keeps its version and is tagged; `nids model
    rollback` moves the alias back."""
    registry = model_registry.registry()
    version = _trained_version(context)
    promotion = registry.promote(version)
    context.log.info(
        f"champion is now version {promotion.version} (was {promotion.previous or 'none'})"
    )
    return MaterializeResult(
        metadata={
            "champion_version": promotion.version,
            "previous_champion": promotion.previous or "none",
            "model_uri": registry.uri(CHAMPION),
            "rollback": "nids model rollback",
        }
    )


def _trained_version(context: AssetExecutionContext) -> str:
    """The model version of gnn_model's newest materialization (in a training run, the one
    this run just made)."""
    event = context.instance.get_latest_materialization_event(gnn_model.key)
    if event is None or event.asset_materialization is None:
        raise LookupError("gnn_model has never been materialized: run training_job")
    return str(event.asset_materialization.metadata["model_version"].value)
