"""Consumer-lag monitoring: an observation of `consumer_offsets` every minute, with lag per
partition as metadata (plotted over time in the UI), and the `consumer_lag` check."""

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

from nids_core.kafka.lag import lag_verdict, measure_lag
from nids_core.kafka.log import KafkaUnavailable, TopicNotFound
from nids_resources.kafka import KafkaResource
from nids_resources.serving import ServingSettingsResource

CONSUMER_LAG_CHECK = "consumer_lag"


def lag_events(kafka: KafkaResource, serving: ServingSettingsResource) -> list:
    with kafka.open_client() as client:
        lags = measure_lag(client, kafka.topic)
    passed, severity = lag_verdict(lags, serving.lag_warn_records, serving.lag_fail_records)
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
        description="Records consumer-group lag per partition (high watermark minus committed "
        "offset) as an observation of consumer_offsets and evaluates the consumer_lag check "
        "(warn above NIDS_LAG_WARN_RECORDS, fail above NIDS_LAG_FAIL_RECORDS).",
    )(_kafka_lag_sensor)


def _kafka_lag_sensor(
    context: SensorEvaluationContext, kafka: KafkaResource, serving: ServingSettingsResource
):
    try:
        events = lag_events(kafka, serving)
    except (KafkaUnavailable, TopicNotFound) as exc:
        return SkipReason(f"lag not measured: {exc}")
    return SensorResult(asset_events=events)
