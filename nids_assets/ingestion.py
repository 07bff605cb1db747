"""Streaming side: one Kafka micro-batch lands as Parquet, then is upserted into DuckDB,
then the consumer group's offset moves."""

import time
from datetime import UTC, datetime, timedelta

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Backoff,
    Config,
    Failure,
    FreshnessPolicy,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    RunConfig,
    asset,
)
from pydantic import Field

from nids_assets.ingestion_checks import (
    FLOW_BATCH_CHECKS,
    HOT_FLOWS_CHECKS,
    SCORING_KEEPS_UP,
    flow_batch_accounting,
    hot_flows_accounting,
    hot_flows_schema,
    hot_flows_value_ranges,
)
from nids_assets.pipeline_health import scoring_progress
from nids_core.ingest.landing import land_batch, load_batch_into_hot
from nids_core.ingest.planning import GapBeforeRange, ensure_contiguous
from nids_core.kafka.lag import PartitionLag, lag_verdict
from nids_core.kafka.log import Watermarks
from nids_core.kafka.offsets import OffsetRange
from nids_resources.kafka import KafkaResource
from nids_resources.plausibility import PlausibleTimeResource
from nids_resources.serving import ServingSettingsResource
from nids_resources.stores import ColdStoreResource, HotStoreResource

INGEST_GROUP = "ingestion"
DUCKDB_POOL = "duckdb"
# Transient faults (a broker restart, S3 throttling, a held DuckDB lock) are retried inside
# the run with exponential backoff; a batch that still fails is re-requested by the sensor.
INGEST_RETRY = RetryPolicy(
    max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
)


class KafkaBatchConfig(Config):
    """One micro-batch: a topic partition and the offset range [start, end)."""

    topic: str = Field(description="Kafka topic.")
    partition: int = Field(ge=0, description="Partition number.")
    start: int = Field(ge=0, description="First offset of the batch.")
    end: int = Field(ge=1, description="One past the last offset of the batch.")

    def offsets(self) -> OffsetRange:
        return OffsetRange(self.topic, self.partition, self.start, self.end)


INGEST_ASSETS = ("flow_batch", "hot_flows", "consumer_offsets")


def batch_run_config(offsets: OffsetRange) -> RunConfig:
    """Run config giving every ingest asset the same batch."""
    config = KafkaBatchConfig(
        topic=offsets.topic, partition=offsets.partition, start=offsets.start, end=offsets.end
    )
    return RunConfig(ops={name: config for name in INGEST_ASSETS})


def _batch_metadata(offsets: OffsetRange) -> dict:
    return {
        "topic": offsets.topic,
        "partition": offsets.partition,
        "offset_start": offsets.start,
        "offset_end": offsets.end,
    }


def _refuse_gap(batch: OffsetRange, committed: int | None, marks: Watermarks) -> None:
    """Fail the run, without step retries, when offsets before the batch are not committed
    (the batch queued ahead of it failed): retrying cannot help until that one succeeds,
    and the sensor requests this range again after it."""
    try:
        ensure_contiguous(batch, committed, marks)
    except GapBeforeRange as exc:
        raise Failure(str(exc), allow_retries=False) from exc


@asset(
    group_name=INGEST_GROUP,
    kinds={"kafka", "parquet"},
    retry_policy=INGEST_RETRY,
    check_specs=FLOW_BATCH_CHECKS,
)
def flow_batch(
    context: AssetExecutionContext,
    config: KafkaBatchConfig,
    kafka: KafkaResource,
    cold_store: ColdStoreResource,
    plausible_time: PlausibleTimeResource,
) -> MaterializeResult:
    """Landing zone: one Kafka offset range of Zeek conn records, parsed and written as
    Parquet under `landing/date=YYYY-MM-DD/<topic>-p<partition>-<start>-<end>-<digest>.parquet`
    (malformed or implausible records to `landing/_quarantine/` with their reason). A re-run
    over the same records replaces the same files; other records under reused offsets (a
    restarted broker, a recreated topic) land beside them, named by their own digest."""
    store = cold_store.store()
    batch = config.offsets()
    with kafka.open_client() as client:
        committed = client.committed(batch.topic, [batch.partition])[batch.partition]
        # The usual case is the group standing at the range's start; only otherwise (the
        # first batch, a re-run, a reset log) are the watermarks read, since the exact high
        # watermark costs a fetch.
        if committed != batch.start:
            marks = client.watermarks(batch.topic, [batch.partition])[batch.partition]
            _refuse_gap(batch, committed, marks)
        landed = land_batch(
            client,
            store,
            batch,
            max_message_bytes=kafka.max_message_bytes,
            read_timeout_s=kafka.read_timeout_s,
            plausible=plausible_time.window(),
        )
    m = landed.manifest
    total = landed.read_seconds + landed.parse_seconds + landed.write_seconds
    context.log.info(
        f"landed {m.name}: {m.records} records, {m.flows} flows, {m.quarantined} quarantined"
    )
    return MaterializeResult(
        metadata={
            **_batch_metadata(batch),
            "records_read": m.records,
            "flows_landed": m.flows,
            "quarantined": m.quarantined,
            "dates": MetadataValue.json(m.rows_by_date),
            "reject_reasons": MetadataValue.json(landed.reject_reasons),
            "read_seconds": round(landed.read_seconds, 3),
            "parse_seconds": round(landed.parse_seconds, 3),
            "write_seconds": round(landed.write_seconds, 3),
            "records_per_second": round(m.records / total, 1) if total > 0 else 0.0,
            "batch": m.name,
            "landing_manifest": store.manifest_file(m.name),
            "records_digest": m.digest,
        },
        check_results=[flow_batch_accounting(store, m)],
    )


@asset(
    deps=[flow_batch],
    group_name=INGEST_GROUP,
    kinds={"duckdb"},
    pool=DUCKDB_POOL,
    retry_policy=INGEST_RETRY,
    check_specs=HOT_FLOWS_CHECKS,
    # Stale when no batch has landed for a while: Zeek, Kafka or the sensor has stopped.
    freshness_policy=FreshnessPolicy.time_window(
        fail_window=timedelta(minutes=15), warn_window=timedelta(minutes=5)
    ),
)
def hot_flows(
    context: AssetExecutionContext,
    config: KafkaBatchConfig,
    hot_store: HotStoreResource,
    cold_store: ColdStoreResource,
    plausible_time: PlausibleTimeResource,
    serving: ServingSettingsResource,
) -> MaterializeResult:
    """Hot table `flows` in DuckDB: the landed batch upserted on Zeek `uid` (the lowest Kafka
    provenance wins, so duplicates and re-runs change nothing), its malformed records
    added to `quarantine`, in one transaction."""
    store = cold_store.store()
    # The batch is read back from the landing zone, not handed over by flow_batch: the
    # landed file is the durable copy, so a retried step or another process upserts
    # exactly what landed and what consumer_offsets then commits.
    batch = config.offsets()
    manifest = store.read_manifest(batch)
    with hot_store.connect() as con:
        load = load_batch_into_hot(con, store, manifest, hot_store.backend())
        c = load.counts
        duplicates = c.duplicates_in_batch + c.already_present
        checks = [
            hot_flows_accounting(con, manifest, load, c.inserted, duplicates),
            hot_flows_schema(con),
            hot_flows_value_ranges(con, manifest, load.uids, plausible_time.window()),
        ]
    scoring = scoring_progress(context.instance, time.time(), serving.stall_minutes * 60)
    checks.append(
        AssetCheckResult(
            check_name=SCORING_KEEPS_UP,
            passed=scoring.passed,
            severity=AssetCheckSeverity.ERROR,
            metadata=scoring.metadata,
        )
    )
    context.log.info(
        f"{manifest.name}: {c.inserted} inserted, {duplicates} duplicates, "
        f"{manifest.quarantined} quarantined"
    )
    return MaterializeResult(
        metadata={
            **_batch_metadata(batch),
            "records_read": manifest.records,
            "rows_stored": c.inserted,
            "quarantined": manifest.quarantined,
            "duplicates": duplicates,
            "duplicates_in_batch": c.duplicates_in_batch,
            "already_present": c.already_present,
            "replaced_by_lower_offset": c.replaced,
            "quarantine_rows_added": load.quarantined_new,
            "write_seconds": round(load.seconds, 3),
        },
        check_results=checks,
    )


@asset(
    deps=[hot_flows],
    group_name=INGEST_GROUP,
    kinds={"kafka"},
    retry_policy=INGEST_RETRY,
    check_specs=[
        AssetCheckSpec(
            "consumer_lag",
            asset="consumer_offsets",
            description="Consumer lag of the partition (high watermark minus committed "
            "offset): warns above NIDS_LAG_WARN_RECORDS, fails above NIDS_LAG_FAIL_RECORDS. "
            "Also evaluated every minute for all partitions by kafka_lag_sensor.",
        )
    ],
)
def consumer_offsets(
    context: AssetExecutionContext,
    config: KafkaBatchConfig,
    kafka: KafkaResource,
    serving: ServingSettingsResource,
) -> MaterializeResult:
    """Committed offsets of consumer group `nids-etl`: moved to the end of the batch only
    after it is durable in the landing zone and the hot table (at-least-once delivery,
    made effectively-once by the keyed writes). Never moves an offset backwards, except an
    offset beyond the high watermark, which a recreated topic leaves invalid."""
    batch = config.offsets()
    topic, partition, end = batch.topic, batch.partition, batch.end
    with kafka.open_client() as client:
        # Read again here, not taken from flow_batch: another run of this partition (a
        # re-run, a manual launch) may have committed since, and a commit never moves back.
        before = client.committed(topic, [partition])[partition]
        marks = client.watermarks(topic, [partition])[partition]
        high = marks.high
        # Never leave a gap: the batch ahead of this one must have committed first.
        _refuse_gap(batch, before, marks)
        # Forward only, except from an offset beyond the log's end (a recreated topic):
        # that one is invalid, and the batch just landed was read from the new log. Both
        # clients commit synchronously and raise when the broker refuses: no read-back.
        after = before
        if before is None or before < end or before > high:
            client.commit(topic, partition, end)
            after = end
    metadata = {
        **_batch_metadata(batch),
        "group_id": kafka.group_id,
        "committed_before": before if before is not None else -1,
        "committed_offset": after,
        "high_watermark": high,
        "lag": max(0, high - after),
        "committed_at": datetime.now(UTC).isoformat(),
    }
    context.log.info(f"committed {topic}[{partition}] at {after}; lag {high - after}")
    lag = PartitionLag(partition, after, high, 0)
    passed, severity = lag_verdict([lag], serving.lag_warn_records, serving.lag_fail_records)
    check = AssetCheckResult(
        check_name="consumer_lag",
        passed=passed,
        severity=AssetCheckSeverity(severity),
        metadata={
            f"lag_partition_{partition}": lag.lag,
            "warn_above": serving.lag_warn_records,
            "fail_above": serving.lag_fail_records,
        },
    )
    return MaterializeResult(metadata=metadata, check_results=[check])
