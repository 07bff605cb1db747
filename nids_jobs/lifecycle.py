"""The hourly hot-data lifecycle job (an op job: it maintains tables, it is not an asset)."""

from datetime import UTC, datetime, timedelta

from dagster import (
    AssetMaterialization,
    AssetObservation,
    DefaultScheduleStatus,
    OpExecutionContext,
    ScheduleDefinition,
    job,
    op,
)

from nids_core.stores.lifecycle import (
    expire_hot_data,
    quarantine_implausible,
    remove_uids_stored_twice,
)
from nids_resources.plausibility import PlausibleTimeResource
from nids_resources.serving import ServingSettingsResource
from nids_resources.stores import ColdStoreResource, HotStoreResource


@op(pool="duckdb")
def expire_hot_flows(
    context: OpExecutionContext,
    hot_store: HotStoreResource,
    cold_store: ColdStoreResource,
    serving: ServingSettingsResource,
    plausible_time: PlausibleTimeResource,
) -> None:
    """Delete hot flows (and their predictions) older than NIDS_HOT_RETENTION_HOURS, per
    UTC day, only when the day's cold partition holds all of them (rebuilt from the landing
    zone first if it does not); predictions are merged into the cold store first. Flows
    whose ts lies outside the plausible window as now set (NIDS_TS_EARLIEST or
    NIDS_TS_MAX_AHEAD_HOURS narrowed since they were stored) are moved to `quarantine`
    instead: they would never expire. A uid stored twice (a record sent again with another
    ts) keeps its lowest-offset row and its first prediction. On a DuckLake, then the lake's
    own maintenance: small writes flushed from the catalog into files, adjacent files
    merged, old snapshots expired and the files only they held deleted."""
    cutoff = datetime.now(UTC) - timedelta(hours=serving.hot_retention_hours)
    store = cold_store.store()
    earliest, latest = plausible_time.window().bounds()
    backend = hot_store.backend()
    with hot_store.connect() as con:
        # On a DuckLake, a delete whose commit lost to a concurrent ingest run's insert is
        # done again from the start (each step is idempotent).
        moved = backend.retrying(lambda: quarantine_implausible(con, earliest, latest))
        twice_flows, twice_predictions = backend.retrying(lambda: remove_uids_stored_twice(con))
        results = backend.retrying(lambda: expire_hot_data(con, store, cutoff))
        maintenance = backend.maintain(con, datetime.now(UTC))
    if maintenance:
        context.log.info(
            "DuckLake maintenance: "
            + ", ".join(f"{step} {seconds:.2f} s" for step, seconds in maintenance.items())
        )
        context.log_event(
            AssetObservation(
                asset_key="hot_flows",
                description="DuckLake maintenance by the lifecycle job",
                metadata={f"maintenance_{k}_seconds": v for k, v in maintenance.items()},
            )
        )
    if twice_flows or twice_predictions:
        context.log.warning(
            f"removed {twice_flows} flows and {twice_predictions} predictions of uids stored "
            "twice (records sent again with another ts); the lowest offset's copy is kept"
        )
    if moved:
        context.log.warning(
            f"moved {moved} hot flows with a ts outside the plausible window to quarantine"
        )
    if not results:
        context.log.info(f"no hot flows older than {cutoff.isoformat()}")
    for r in results:
        if r.rebuilt_cold:
            context.log_event(
                AssetMaterialization(
                    asset_key="cold_flows",
                    partition=r.day,
                    description="rebuilt by the lifecycle job before expiring hot rows",
                )
            )
        if r.skipped_reason:
            context.log.warning(f"kept hot rows of {r.day}: {r.skipped_reason}")
            continue
        if r.exported_predictions:
            context.log_event(
                AssetMaterialization(
                    asset_key="cold_predictions",
                    partition=r.day,
                    metadata={"rows": r.exported_predictions},
                    description="served predictions exported before expiring hot rows",
                )
            )
        context.log.info(
            f"{r.day}: deleted {r.deleted_flows} hot flows and {r.deleted_predictions} "
            f"predictions (cold partition verified{', rebuilt' if r.rebuilt_cold else ''})"
        )


@job(
    description="Hourly: expire hot data that is safely in the cold store.",
    tags={"dagster/max_runtime": "1800"},
)
def hot_lifecycle_job():
    expire_hot_flows()


hourly_lifecycle_schedule = ScheduleDefinition(
    name="hourly_lifecycle_schedule",
    job=hot_lifecycle_job,
    cron_schedule="17 * * * *",
    execution_timezone="UTC",
    default_status=DefaultScheduleStatus.RUNNING,
)
