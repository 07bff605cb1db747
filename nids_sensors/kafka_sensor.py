"""Kafka sensor: new offsets beyond the consumer group's committed offsets become ingest runs."""

import time

from dagster import (
    DagsterInstance,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from nids_assets.ingestion import batch_run_config
from nids_core.ingest.planning import plan_batches
from nids_core.ingest.sensor_cursor import dump_cursor, fresh_generation, load_cursor
from nids_core.kafka.log import KafkaUnavailable, TopicNotFound
from nids_jobs.jobs import ingest_job
from nids_resources.kafka import KafkaResource
from nids_sensors.dead_runs import reap_dead_runs
from nids_sensors.run_state import run_status

# Tag whose value is one topic partition: the instance's run queue lets one run per value
# start at a time (`tag_concurrency_limits` in dagster.yaml), so a range queued behind the
# partition's batch in flight starts when that one ends.
INGEST_LANE_TAG = "nids/ingest_lane"


def lanes_serialised(instance: DagsterInstance) -> bool:
    """Whether the instance's run queue starts one run per INGEST_LANE_TAG value at a time.
    Without that limit a queued range would start beside the run ahead of it and fail
    (its earlier offsets not committed yet), so the sensor then requests one range per
    partition at a time, as before lanes existed."""
    queue = instance.get_concurrency_config().run_queue_config
    return any(
        limit.get("key") == INGEST_LANE_TAG
        and limit.get("limit") == 1
        and limit.get("value") == {"applyLimitPerUniqueValue": True}
        for limit in (queue.tag_concurrency_limits if queue else [])
    )


def _newest_run_generation(instance: DagsterInstance, topic: str, partition: int) -> int | None:
    """The generation tag of the newest ingest run requested for the partition, if any."""
    runs = instance.get_runs(
        filters=RunsFilter(
            job_name=ingest_job.name,
            tags={"nids/topic": topic, "nids/partition": str(partition)},
        ),
        limit=1,
    )
    if not runs:
        return None
    try:
        return int(runs[0].tags.get("nids/generation", "0"))
    except ValueError:
        return 0


def kafka_ingest_sensor(interval_s: int) -> SensorDefinition:
    """The sensor, looking every `interval_s` seconds (a setting read at load)."""
    return sensor(
        name="kafka_ingest_sensor",
        job=ingest_job,
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description=(
            "Finds partitions of the Zeek topic where consumer group `nids-etl` is behind the high "
            "watermark and requests one ingest run per partition and offset range (at most "
            "NIDS_KAFKA_MAX_BATCH_RECORDS records); while a partition's run is in flight, its "
            "next range is queued behind it (one run per partition at a time). Failed batches "
            "are re-requested, same range, with backoff."
        ),
    )(_kafka_ingest_sensor)


def _kafka_ingest_sensor(context: SensorEvaluationContext, kafka: KafkaResource):
    topic = kafka.topic
    try:
        with kafka.open_client() as client:
            partitions = client.partitions(topic)
            committed = client.committed(topic, partitions)
            watermarks = client.watermarks(topic, partitions)
    except KafkaUnavailable as exc:
        return SkipReason(f"Kafka unreachable at {kafka.bootstrap_servers}: {exc}")
    except TopicNotFound:
        return SkipReason(f"topic {topic!r} does not exist yet on {kafka.bootstrap_servers}")

    loaded = load_cursor(context.cursor, topic)
    for repair in loaded.repairs:
        context.log.warning(f"sensor cursor repaired: {repair}")
    cursor, generations = loaded.lanes, loaded.generations
    for p in partitions:
        if p not in generations:
            generations[p] = fresh_generation(_newest_run_generation(context.instance, topic, p))
    # A run whose process died stays "started": fail it now, so its batch is retried.
    reap_dead_runs(context.instance, job_names=[ingest_job.name])
    statuses = {
        key: run_status(context.instance, key)
        for key in {b.run_key for lane in cursor.values() for b in lane}
    }
    plan = plan_batches(
        topic,
        committed,
        watermarks,
        cursor,
        statuses,
        kafka.max_batch_records,
        time.time(),
        queue_next=lanes_serialised(context.instance),
        generations=generations,
    )
    for p, why in sorted(plan.waiting.items()):
        if why.startswith("offsets reset"):
            context.log.warning(f"{topic}[{p}]: {why}")
    if not plan.batches:
        reasons = "; ".join(f"partition {p}: {why}" for p, why in sorted(plan.waiting.items()))
        return SensorResult(
            skip_reason=SkipReason(reasons or "no partitions"),
            cursor=dump_cursor(topic, plan.cursor, plan.generations),
        )
    requests = [
        RunRequest(
            run_key=b.run_key,
            run_config=batch_run_config(b.offsets),
            tags={
                "nids/topic": b.offsets.topic,
                "nids/partition": str(b.offsets.partition),
                "nids/offset_range": f"{b.offsets.start}-{b.offsets.end}",
                "nids/attempt": str(b.attempt),
                "nids/generation": str(b.generation),
                INGEST_LANE_TAG: f"{b.offsets.topic}-{b.offsets.partition}",
            },
        )
        for b in plan.batches
    ]
    return SensorResult(
        run_requests=requests, cursor=dump_cursor(topic, plan.cursor, plan.generations)
    )
