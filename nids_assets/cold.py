"""Batch side: the daily-partitioned cold Parquet store."""

from dagster import AssetExecutionContext, MaterializeResult, RetryPolicy, asset

from nids_assets.ingestion import flow_batch
from nids_assets.partitions import daily_partitions
from nids_resources.stores import ColdStoreResource


@asset(
    deps=[flow_batch],
    partitions_def=daily_partitions,
    group_name="cold_storage",
    kinds={"parquet", "s3"},
    retry_policy=RetryPolicy(max_retries=2, delay=5),
)
def cold_flows(context: AssetExecutionContext, cold_store: ColdStoreResource) -> MaterializeResult:
    """Cold flows of one UTC day at `<cold>/flows/date=YYYY-MM-DD/part-0.parquet`, rebuilt whole
    and atomically from that day's landing files: deduplicated on uid, sorted by (ts, uid),
    so backfilling any range any number of times gives identical files."""
    day = context.partition_key
    store = cold_store.store()
    rows = store.rewrite_cold_day(day)
    path = store.cold_file(day)
    size = store.fs.size(path)
    context.log.info(f"cold partition {day}: {rows} flows -> {path}")
    return MaterializeResult(
        metadata={
            "rows": rows,
            "path": f"{store.url}/flows/date={day}/part-0.parquet",
            "bytes": size,
            "landing_files": len(store.landing_files(day)),
        }
    )
