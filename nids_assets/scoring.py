"""Serving side: score new hot flows with the champion, and group attacks into alerts."""

from datetime import timedelta

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    FreshnessPolicy,
    MaterializeResult,
    asset,
)

from nids_assets.ingestion import hot_flows
from nids_assets.model import champion_model
from nids_core.serving.alerts import latest_attack_rate, refresh_alerts, top_alert_hosts
from nids_resources.mlflow import ModelRegistryResource
from nids_resources.plausibility import PlausibleTimeResource
from nids_resources.serving import ServingSettingsResource
from nids_resources.stores import HotStoreResource

SERVING_GROUP = "serving"
ATTACK_RATE_CHECK = "attack_rate_in_newest_window"


@asset(
    deps=[hot_flows, champion_model],
    group_name=SERVING_GROUP,
    kinds={"duckdb", "pytorch"},
    # No `duckdb` pool: the run's seconds of loading torch and the model would hold back
    # every ingest run. It takes DuckDB's file lock (waiting with backoff) only to read
    # the flows it scores and insert their predictions.
    # Requested by scoring_sensor while ingest runs go on (one scoring run at a time).
    freshness_policy=FreshnessPolicy.time_window(
        fail_window=timedelta(minutes=15), warn_window=timedelta(minutes=2)
    ),
)
def flow_predictions(
    context: AssetExecutionContext,
    hot_store: HotStoreResource,
    model_registry: ModelRegistryResource,
    serving: ServingSettingsResource,
    plausible_time: PlausibleTimeResource,
) -> MaterializeResult:
    """Table `predictions` (uid, score, predicted_label, model_version, predicted_at): every
    hot flow without a prediction is scored by the model with alias `champion`, its graph
    built over its time window of the hot table so it has its recent neighbours as context.
    Inserted once, never overwritten: a new champion scores only flows that arrive after it.
    The champion is read from the MLflow registry and served only if its gate passed (or an
    operator overrode the gate); its files are checked against the checksum recorded at
    registration before loading, and cached per version. Without a servable champion the
    run fails; it never writes default predictions, and a score that is not a number is
    never a verdict."""
    # torch and MLflow load in the scoring run only, not in every process that loads the
    # code location (sensors, ingest runs).
    from nids_core.serving.model_cache import champion_scorer
    from nids_core.serving.scoring import score_unscored

    version, scorer = champion_scorer(model_registry.registry(), serving.model_cache_dir)
    with hot_store.connect() as con:
        counts = score_unscored(
            con,
            scorer,
            version,
            serving.max_flows_per_scoring_run,
            plausible_time.window().latest(),
        )
        total = con.execute("SELECT count(*) FROM predictions").fetchone()[0]
    if counts.unscorable:
        context.log.warning(f"{counts.unscorable} flows got no finite score: left unscored")
    context.log.info(
        f"champion v{version}: scored {counts.inserted} flows ({counts.predicted_attacks} "
        f"attacks) in {counts.windows} windows, {counts.context_flows} flows of context"
    )
    return MaterializeResult(
        metadata={
            "model_version": version,
            "scored": counts.inserted,
            "predicted_attacks": counts.predicted_attacks,
            "graph_windows": counts.windows,
            "context_flows": counts.context_flows,
            "seconds": round(counts.seconds, 3),
            "flows_per_second": round(counts.inserted / counts.seconds, 1)
            if counts.seconds > 0 and counts.inserted
            else 0.0,
            "unscorable": counts.unscorable,
            "predictions_total": int(total),
            "unscored_remaining": counts.remaining,
        }
    )


@asset(
    deps=[flow_predictions],
    group_name=SERVING_GROUP,
    kinds={"duckdb"},
    check_specs=[
        AssetCheckSpec(
            ATTACK_RATE_CHECK,
            asset="alerts",
            description="Fails when the share of flows scored as attacks in the newest window "
            "reaches NIDS_ALERT_MAX_ATTACK_RATE (the alert webhook then fires).",
        )
    ],
)
def alerts(
    context: AssetExecutionContext,
    hot_store: HotStoreResource,
    serving: ServingSettingsResource,
    plausible_time: PlausibleTimeResource,
) -> MaterializeResult:
    """Table `alerts`: per source host and NIDS_ALERT_WINDOW_MINUTES window, the flows scored
    at or above NIDS_ALERT_MIN_SCORE (count, peers, ports, max and mean score, first and last
    seen, model versions), rebuilt for the windows that got predictions since the last
    refresh (every window still in the hot table, the first time)."""
    latest = plausible_time.window().latest()
    with hot_store.connect() as con:
        refreshed = refresh_alerts(
            con, serving.alert_min_score, serving.alert_window_minutes, latest
        )
        window, scored, attacks = latest_attack_rate(
            con, serving.alert_min_score, serving.alert_window_minutes, latest
        )
        top = top_alert_hosts(con)
    rate = attacks / scored if scored else 0.0
    check = AssetCheckResult(
        check_name=ATTACK_RATE_CHECK,
        passed=rate < serving.max_attack_rate,
        severity=AssetCheckSeverity.ERROR,
        metadata={
            "window_start": window or "none",
            "scored_flows": scored,
            "attack_flows": attacks,
            "attack_rate": round(rate, 4),
            "threshold": serving.max_attack_rate,
        },
    )
    context.log.info(f"{refreshed.alerts} alerts from {refreshed.hosts} hosts")
    return MaterializeResult(
        metadata={
            "alerts": refreshed.alerts,
            "alerting_hosts": refreshed.hosts,
            "windows": refreshed.windows,
            "windows_refreshed": refreshed.refreshed_windows,
            "top_hosts": ", ".join(f"{h} ({a})" for h, a, *_ in top) or "none",
        },
        check_results=[check],
    )
