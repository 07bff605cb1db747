"""Consumer lag and pipeline health, every minute: an observation of `consumer_offsets`
with lag per partition as metadata (plotted over time in the UI), the `consumer_lag` check
(which also fails when records wait with no batch committed for NIDS_HEALTH_STALL_MINUTES,
whatever the lag, or when kafka_ingest_sensor keeps failing), the `scoring_keeps_up` check
of `hot_flows`, and an alert for any sensor whose ticks keep failing."""

import json
import time

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    AssetObservation,
    DefaultSensorStatus,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from nids_assets.pipeline_health import (
    SCORING_KEEPS_UP_CHECK,
    FailingSensor,
    failing_sensors,
    scoring_progress,
)
from nids_core.escaping import escape_chat
from nids_core.kafka.lag import (
    PartitionLag,
    Progress,
    lag_verdict,
    measure_lag,
    stalled_partitions,
    track_progress,
)
from nids_core.kafka.log import KafkaUnavailable, TopicNotFound
from nids_resources.kafka import KafkaResource
from nids_resources.serving import ServingSettingsResource
from nids_sensors.alert_sensors import raise_alert

CONSUMER_LAG_CHECK = "consumer_lag"
INGEST_SENSOR = "kafka_ingest_sensor"


def lag_events(
    lags: list[PartitionLag],
    serving: ServingSettingsResource,
    stalled: dict[int, str] | None = None,
    ingest_failing: FailingSensor | None = None,
) -> list:
    passed, severity = lag_verdict(lags, serving.lag_warn_records, serving.lag_fail_records)
    problems = list((stalled or {}).values())
    if ingest_failing is not None:
        problems.append(
            f"{INGEST_SENSOR} failed its last {ingest_failing.failed_ticks} ticks: "
            f"{ingest_failing.error[:300]}"
        )
    if problems:
        passed, severity = False, "ERROR"
    per_partition = {f"lag_partition_{x.partition}": x.lag for x in lags}
    total = sum(x.lag for x in lags)
    worst = max((x.lag for x in lags), default=0)
    key = AssetKey("consumer_offsets")
    return [
        AssetObservation(
            asset_key=key,
            metadata={"total_lag": total, "max_partition_lag": worst, **per_partition},
        ),
        AssetCheckEvaluation(
            asset_key=key,
            check_name=CONSUMER_LAG_CHECK,
            passed=passed,
            severity=AssetCheckSeverity(severity),
            metadata={
                "max_partition_lag": worst,
                "total_lag": total,
                "warn_above": serving.lag_warn_records,
                "fail_above": serving.lag_fail_records,
                "stopped": "; ".join(problems) or "no",
                **per_partition,
            },
        ),
    ]


def kafka_lag_sensor(interval_s: int) -> SensorDefinition:
    """The sensor, looking every `interval_s` seconds (a setting read at load)."""
    return sensor(
        name="kafka_lag_sensor",
        minimum_interval_seconds=interval_s,
        default_status=DefaultSensorStatus.RUNNING,
        description="Records consumer-group lag per partition as an observation of "
        "consumer_offsets and evaluates consumer_lag (warn above NIDS_LAG_WARN_RECORDS, fail "
        "above NIDS_LAG_FAIL_RECORDS, or when records wait with no batch committed for "
        "NIDS_HEALTH_STALL_MINUTES, or when kafka_ingest_sensor keeps failing) and "
        "hot_flows' scoring_keeps_up; a sensor failing NIDS_HEALTH_SENSOR_FAIL_TICKS ticks in "
        "a row raises an alert.",
    )(_kafka_lag_sensor)


def _load(raw: str | None) -> tuple[dict[int, Progress], float | None]:
    """(progress per partition, since when Kafka has been unreachable)."""
    try:
        doc = json.loads(raw) if raw else {}
        progress = {int(p): Progress(c, float(t)) for p, (c, t) in doc.get("progress", {}).items()}
        down = doc.get("unreachable_since")
        return progress, (float(down) if down is not None else None)
    except (ValueError, TypeError, AttributeError):
        return {}, None


def _alert_failing_sensors(
    context: SensorEvaluationContext, serving: ServingSettingsResource, failing: list
) -> None:
    """One alert per streak of failed ticks (keyed by its first tick: the outbox stores
    it once, however many looks see the streak)."""
    for f in failing:
        raise_alert(
            context,
            serving,
            f"sensor_failing:{f.name}:{f.streak_start_tick}",
            {
                "kind": "sensor_failing",
                "summary": f"sensor {f.name} failed its last {f.failed_ticks} ticks",
                "text": f":rotating_light: NIDS sensor `{escape_chat(f.name)}` failed its "
                f"last {f.failed_ticks} ticks: `{escape_chat(f.error[:500])}`",
                "sensor": f.name,
                "failed_ticks": f.failed_ticks,
                "error": f.error,
            },
        )


def _kafka_lag_sensor(
    context: SensorEvaluationContext, kafka: KafkaResource, serving: ServingSettingsResource
):
    now = time.time()
    progress, unreachable_since = _load(context.cursor)
    names = {s.name for s in context.repository_def.sensor_defs}
    failing = failing_sensors(context.instance, names, serving.sensor_fail_ticks)
    _alert_failing_sensors(context, serving, failing)
    scoring = scoring_progress(context.instance, now, serving.stall_minutes * 60)
    scoring_check = AssetCheckEvaluation(
        asset_key=AssetKey("hot_flows"),
        check_name=SCORING_KEEPS_UP_CHECK,
        passed=scoring.passed,
        severity=AssetCheckSeverity.ERROR,
        metadata=scoring.metadata,
    )
    try:
        with kafka.open_client() as client:
            lags = measure_lag(client, kafka.topic)
    except (KafkaUnavailable, TopicNotFound) as exc:
        down = unreachable_since if unreachable_since is not None else now
        events: list = [scoring_check]
        if now - down >= serving.stall_minutes * 60:
            # Nothing can be ingested while Kafka is gone: that is a stop too.
            events.append(
                AssetCheckEvaluation(
                    asset_key=AssetKey("consumer_offsets"),
                    check_name=CONSUMER_LAG_CHECK,
                    passed=False,
                    severity=AssetCheckSeverity.ERROR,
                    metadata={
                        "stopped": f"Kafka unreachable for {(now - down) / 60:.0f} min: "
                        f"{str(exc)[:300]}"
                    },
                )
            )
        cursor = {
            "progress": {str(p): [x.committed, x.since] for p, x in progress.items()},
            "unreachable_since": down,
        }
        return SensorResult(
            asset_events=events,
            skip_reason=SkipReason(f"lag not measured: {exc}"),
            cursor=json.dumps(cursor, sort_keys=True),
        )
    progress = track_progress(progress, lags, now)
    stalled = stalled_partitions(progress, lags, now, serving.stall_minutes * 60)
    ingest = next((f for f in failing if f.name == INGEST_SENSOR), None)
    cursor = {"progress": {str(p): [x.committed, x.since] for p, x in progress.items()}}
    return SensorResult(
        asset_events=[*lag_events(lags, serving, stalled, ingest), scoring_check],
        cursor=json.dumps(cursor, sort_keys=True),
    )
