"""Batch side: the daily-partitioned cold Parquet store. The partitions' first day is a
setting, so the two assets are made by `cold_assets(partitions)` when the code location
loads."""

import warnings
from datetime import UTC, date, datetime

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    BackfillPolicy,
    BetaWarning,
    Config,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
)
from pydantic import Field

from nids_core.stores.hot import PREDICTION_COLUMNS
from nids_resources.mlflow import ModelRegistryResource
from nids_resources.serving import ServingSettingsResource
from nids_resources.stores import ColdStoreResource, HotStoreResource


class ColdFlowsConfig(Config):
    append_batches: list[str] = Field(
        default=[],
        description="Empty (a backfill, the sensor's compaction of a closed day): rebuild each "
        "day whole from the landing zone. Batch names (what the sensor requests for new "
        "batches): append those landed batches to their days as files, without reading the "
        "rest of the day.",
    )


def cold_flows(
    context: AssetExecutionContext, config: ColdFlowsConfig, cold_store: ColdStoreResource
) -> MaterializeResult:
    """Cold flows of one UTC day under `<cold>/flows/date=YYYY-MM-DD/`. New batches are
    appended as files (`batch-<name>.parquet`, a copy of the batch's landing file: the cost
    is the batch's, not the day's); once the day is closed, or when it is backfilled, it is
    compacted into `part-0.parquet`: rebuilt whole from that day's landing files,
    deduplicated on uid (also against the day before and after: a flow delivered again with
    a timestamp on a neighbouring day is kept once, the first delivery's copy) and sorted
    by (ts, uid), so backfilling any range any number of times, in any grouping, gives
    identical files. Read through the store, a day holds the same rows before and after
    compaction."""
    store = cold_store.store()
    days = list(context.partition_keys)
    if config.append_batches:
        rows = store.append_batches(config.append_batches, set(days))
        context.log.info(
            f"appended {len(config.append_batches)} batches to cold days "
            + ", ".join(f"{d} (+{n} flows)" for d, n in rows.items())
        )
        return MaterializeResult(
            metadata={
                "mode": "append",
                "rows_appended": sum(rows.values()),
                "rows_appended_by_day": MetadataValue.json(rows),
                "batches_appended": len(config.append_batches),
                "path": f"{store.url}/flows/date={days[0]}/"
                if len(days) == 1
                else f"{store.url}/flows/date={{{days[0]}..{days[-1]}}}/",
            }
        )
    rows = store.rewrite_cold_days(days)
    for day in days:
        context.log.info(f"cold partition {day}: {rows[day]} flows -> {store.cold_file(day)}")
    # One result for the run; with a range, each day's figures are in `rows_by_day`.
    return MaterializeResult(
        metadata={
            "mode": "compaction",
            "rows": sum(rows.values()),
            "rows_by_day": MetadataValue.json(rows),
            "path": f"{store.url}/flows/date={days[0]}/part-0.parquet"
            if len(days) == 1
            else f"{store.url}/flows/date={{{days[0]}..{days[-1]}}}/",
            "bytes": sum(store.fs.size(store.cold_file(d)) for d in days),
            "landing_files": sum(len(store.landing_files(d)) for d in days),
            "days_rebuilt_together": len(days),
        }
    )


class ColdPredictionsConfig(Config):
    model_version: str | None = Field(
        default=None,
        description="Empty: export the predictions served from the hot table for this day. "
        "A version number: re-score this day's cold flows with that version of the model "
        "(written under rescored/version=N/, served history untouched).",
    )


def cold_predictions(
    context: AssetExecutionContext,
    config: ColdPredictionsConfig,
    cold_store: ColdStoreResource,
    hot_store: HotStoreResource,
    model_registry: ModelRegistryResource,
    serving: ServingSettingsResource,
) -> MaterializeResult:
    """Predictions of one UTC day in the cold store, so history keeps them after the hot
    table expires: `predictions/date=D/part-0.parquet` holds what was served (merged on
    uid, idempotent; the lifecycle job also exports a day before expiring it), and
    `evidence/date=D/part-0.parquet` the day's evidence (merged on evidence_id). With config
    `model_version`, the day's cold flows are re-scored by that version instead, into
    `rescored/version=N/date=D/part-0.parquet` (a backfill over a range re-scores history,
    each day once, in one run)."""
    store = cold_store.store()
    model = None
    if config.model_version:
        from nids_core.serving.model_cache import load_served  # torch: only when re-scoring

        model = load_served(
            model_registry.registry(), config.model_version, serving.model_cache_dir
        )
    rows: dict[str, int] = {}
    paths: dict[str, str] = {}
    evidence_rows: dict[str, int] = {}
    for day in context.partition_keys:
        if model is not None:
            from nids_core.serving.scoring import predictions_frame

            flows = store.read_cold_day(day)
            frame = predictions_frame(
                flows["uid"], model.scorer.score(flows), model.threshold, model.version
            ).with_columns(pl.lit(datetime.now(UTC)).alias("predicted_at"))
            rows[day] = store.write_rescored(day, config.model_version, frame)
            paths[day] = store.predictions_file(day, config.model_version)
        else:
            with hot_store.connect() as con:
                frame = con.execute(
                    f"SELECT {', '.join(f'p.{c}' for c in PREDICTION_COLUMNS)} "
                    "FROM predictions p JOIN flows f USING (uid) "
                    "WHERE CAST(timezone('UTC', f.ts) AS DATE) = ?",
                    [date.fromisoformat(day)],
                ).pl()
                evidence = con.execute(
                    "SELECT * FROM evidence WHERE CAST(timezone('UTC', window_start) AS DATE) = ?",
                    [date.fromisoformat(day)],
                ).pl()
            rows[day] = store.merge_predictions(day, frame) if frame.height else 0
            paths[day] = store.predictions_file(day)
            if evidence.height:
                evidence_rows[day] = store.merge_evidence(day, evidence)
        context.log.info(f"cold predictions {day}: {rows[day]} rows -> {paths[day]}")
    days = list(rows)
    return MaterializeResult(
        metadata={
            "rows": sum(rows.values()),
            "rows_by_day": MetadataValue.json(rows),
            "model_version": config.model_version or "as served",
            "evidence_rows_by_day": MetadataValue.json(evidence_rows),
            "path": paths[days[0]] if len(days) == 1 else f"{paths[days[0]]} .. {paths[days[-1]]}",
        }
    )


def cold_assets(partitions: DailyPartitionsDefinition) -> list[AssetsDefinition]:
    """`cold_flows` and `cold_predictions` over the given daily partitions. A backfill over
    a range runs once for the whole range (one process, one listing), each day once."""
    with warnings.catch_warnings():
        # backfill_policy is marked beta in this Dagster version; it is what makes a range
        # one run, so the warning says nothing an operator can act on.
        warnings.filterwarnings("ignore", category=BetaWarning)
        return [
            asset(
                name="cold_flows",
                deps=["flow_batch"],
                partitions_def=partitions,
                group_name="cold_storage",
                kinds={"parquet", "s3"},
                retry_policy=RetryPolicy(max_retries=2, delay=5),
                backfill_policy=BackfillPolicy.single_run(),
            )(cold_flows),
            asset(
                name="cold_predictions",
                deps=["cold_flows", "flow_predictions"],
                partitions_def=partitions,
                group_name="cold_storage",
                kinds={"parquet", "pytorch"},
                pool="duckdb",
                backfill_policy=BackfillPolicy.single_run(),
            )(cold_predictions),
        ]
