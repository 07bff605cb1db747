"""Cold-store sensor: days touched by newly landed batches get their cold partition rebuilt."""

from datetime import date, timedelta

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DailyPartitionsDefinition,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from nids_jobs.jobs import cold_flows_job


def cold_flows_sensor(interval_s: int, partitions: DailyPartitionsDefinition) -> SensorDefinition:
    """The sensor, looking every `interval_s` seconds, over the code location's daily
    partitions."""

    def evaluate(context: SensorEvaluationContext):
        return _cold_flows_sensor(context, partitions)

    return sensor(
        name="cold_flows_sensor",
        job=cold_flows_job,
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Reads new `flow_batch` materializations and requests a rebuild of the cold daily "
            "partitions they touched (one run per stretch of consecutive days, keyed by the newest "
            "landing event)."
        ),
    )(evaluate)


def _cold_flows_sensor(context: SensorEvaluationContext, partitions: DailyPartitionsDefinition):
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
    valid = set(partitions.get_partition_keys())
    out_of_range = sorted(days - valid)
    outside = (
        f"landed days outside the cold partitions: {', '.join(out_of_range)}; reload the code "
        "location (its partitions start at the first landed day) or set NIDS_COLD_START_DATE, "
        "then backfill cold_flows for them"
    )
    if out_of_range:
        context.log.warning(outside)
    touched = sorted(days & valid)
    if not touched:
        why = outside if out_of_range else "no landed days in range"
        return SensorResult(skip_reason=SkipReason(why), cursor=str(newest))
    requests = [_rebuild_request(first, last, newest) for first, last in _contiguous(touched)]
    return SensorResult(run_requests=requests, cursor=str(newest))


def _contiguous(days: list[str]) -> list[tuple[str, str]]:
    """Sorted ISO days grouped into runs of consecutive days: [(first, last), ...]."""
    groups: list[list[date]] = []
    for d in (date.fromisoformat(x) for x in days):
        if groups and d - groups[-1][-1] == timedelta(days=1):
            groups[-1].append(d)
        else:
            groups.append([d])
    return [(g[0].isoformat(), g[-1].isoformat()) for g in groups]


def _rebuild_request(first: str, last: str, newest: int) -> RunRequest:
    """One run per stretch of consecutive days (a partition range), a plain partition run
    for a single day."""
    if first == last:
        return RunRequest(run_key=f"cold:{first}:{newest}", partition_key=first)
    return RunRequest(
        run_key=f"cold:{first}..{last}:{newest}",
        tags={
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last,
        },
    )
