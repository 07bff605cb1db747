"""Cold-store sensor: days touched by newly landed batches get their cold partition rebuilt."""

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from nids_assets.partitions import daily_partitions
from nids_jobs.jobs import cold_flows_job
from nids_resources.settings import env_int


@sensor(
    job=cold_flows_job,
    minimum_interval_seconds=env_int("NIDS_COLD_SENSOR_INTERVAL_S", 60),
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Reads new `flow_batch` materializations and requests a rebuild of each cold daily "
        "partition they touched (one run per day and tick, keyed by the newest landing event)."
    ),
)
def cold_flows_sensor(context: SensorEvaluationContext):
    after = int(context.cursor) if context.cursor else None
    result = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("flow_batch"), after_storage_id=after),
        limit=10_000,
        ascending=True,
    )
    if not result.records:
        return SkipReason("no new landed batches")
    newest = max(r.storage_id for r in result.records)
    days: set[str] = set()
    for record in result.records:
        md = record.asset_materialization.metadata if record.asset_materialization else {}
        dates = md.get("dates")
        days.update((dates.value if dates is not None else {}).keys())
    valid = set(daily_partitions.get_partition_keys())
    out_of_range = sorted(days - valid)
    if out_of_range:
        context.log.warning(f"landed days outside the cold partitions: {out_of_range}")
    requests = [
        RunRequest(run_key=f"cold:{day}:{newest}", partition_key=day)
        for day in sorted(days & valid)
    ]
    return SensorResult(run_requests=requests, cursor=str(newest))
